"""Golden keys of the real default VM graph (BuildStream tests/cachekey style).

The config is what `aivm config init` writes for a fixed host, the host facts are fixed,
and the one file input (the ssh public key) has fixed content: every node's key is then
fixed, and checked in at tests/graph/golden/default_vm_keys.json. A change of any key
means every user's built VM is rebuilt (and every shared cache entry missed): make it on
purpose only. Run with AIVM_UPDATE_GOLDEN=1 to rewrite the file, and commit it with the
change that explains it.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from aivm.config import init, load
from aivm.config.to_graph import vm_graph
from aivm.graph.store import Store
from aivm.host.facts import HostFacts
from tests.recipes.helpers import keys_of

GOLDEN = Path(__file__).parent / "golden" / "default_vm_keys.json"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoldenKeyOfTheDefaultVmGraphTest golden@aivm\n"
HOST = HostFacts(accel="kvm", virtiofs=True, state_dir=Path("/var/lib/libvirt/aivm"),
                 nameservers=("192.0.2.53",))


def default_vm_keys(home: Path, store: Store) -> dict[str, str]:
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text(PUBKEY)
    plan = init.detect(init.HostFacts(cpus=4, memory_mib=16000, routes=(), home=home,
                                      timezone="UTC"))
    cfg = load.loads(init.render(plan), home / "config.toml")
    vm = replace(cfg.vms[0], uid=1000, gid=1000)    # what resolve.with_host_ids fills in
    return keys_of(vm_graph(cfg, vm, HOST), store)


def test_default_vm_graph_keys_are_golden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))     # the config names the key as ~/.ssh/...
    got = default_vm_keys(home, Store(tmp_path / "store").ensure())
    if os.environ.get("AIVM_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())
    changed = sorted(n for n in got.keys() | expected.keys() if got.get(n) != expected.get(n))
    assert not changed, (
        f"the keys of the default VM graph changed for {', '.join(changed)}: every user's "
        "VM would be rebuilt and every cache entry missed. If the artifact changes, bump the "
        "recipe's `version` (aivm/recipes) so the change is deliberate, then update "
        f"{GOLDEN.relative_to(Path.cwd()) if GOLDEN.is_relative_to(Path.cwd()) else GOLDEN} "
        "with AIVM_UPDATE_GOLDEN=1 and commit it with the reason; if it should not change, "
        "find what leaked into the key (`aivm build --explain` names the params).")
