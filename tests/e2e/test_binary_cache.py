"""A VM's closure through a binary cache on an OCI registry, on the real stack.

Debian's docker-registry serves 127.0.0.1:5000 inside the stack's network namespace;
every aivm command that talks to it runs inside that namespace (`ip netns exec`).
User A (store A) builds the VM graph and pushes it, signed. Its Debian image is the
run's (built from the host's mirror once per run, in the shared store, and copied into
store A): a cold build of it is what `make bench` times, not this test. User B (same
config and ssh key, another home, an empty store at another path) trusts A's key: its
build substitutes every node and builds none, the domain XML included (it names store
files by reference, resolved against B's store at activation). Store A is deleted before
B's build; no file of B names a path of A; B's `aivm up` boots and answers ssh (the one
boot of this module).
Measured: B's substitution, bytes uploaded for a second VM on the image.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from aivm.cache import sign
from aivm.graph.store import Store
from tests.cache import registry as reg
from tests.e2e.aivm_user import AIVM, AivmUser, debian_user, seed_image
from tests.e2e.harness import RealStack

pytestmark = [pytest.mark.realstack, pytest.mark.slow,
              pytest.mark.skipif(not reg.available(), reason="needs docker-registry")]
TIMES: dict[str, float] = {}


def in_netns(user: AivmUser, *args: str) -> subprocess.CompletedProcess[str]:
    """`aivm ARGS` inside the stack's namespace, where the registry listens."""
    proc = subprocess.run(["ip", "netns", "exec", user.stack.netns, *AIVM, *args],
                          env=user.env, text=True, capture_output=True, timeout=1500,
                          cwd=user.home, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"aivm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def store_section(**values: object) -> str:
    return "\n[store]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def _no_booted_state(text: str) -> str:
    return text.replace("[behavior]\n", "[behavior]\nrestore_snapshots = false\n", 1)


def test_closure_from_the_registry_boots(realstack_env: RealStack, shared_store: Path,
                                         tmp_path: Path) -> None:
    stack = realstack_env
    with reg.serving(tmp_path / "reg", stack.netns) as registry:
        a = debian_user(stack, tmp_path / "a", tmp_path / "store-a")
        a.edit(_no_booted_state)
        seed_image(a, shared_store)
        secret = sign.keygen(tmp_path / "secret", "team-1")
        a.edit(lambda t: t + store_section(secret_key_file=str(tmp_path / "secret"),
                                            push_to=registry.url))
        built = a.json("build")
        assert built["cached"] == ["image.debian"], built   # the copied entry is A's own
        pushed = in_netns(a, "store", "push")
        assert re.search(r"pushed \d+ entries", pushed.stdout), pushed.stdout
        assert "not pushed" not in pushed.stdout, pushed.stdout  # the domain XML travels too
        first_bytes = int(re.search(r"\((\d+) bytes\)", pushed.stdout).group(1))

        b_home = tmp_path / "b"
        shutil.copytree(a.home, b_home, symlinks=True)
        b = AivmUser(stack, b_home, tmp_path / "store-b")
        b.edit(lambda t: t.split("\n[store]\n")[0] + store_section(
            substituters=[registry.url], trusted_keys=[secret.public]))
        shutil.rmtree(a.store)  # nothing of A is left to lean on
        started = time.monotonic()
        report = json.loads(in_netns(b, "build", "--json").stdout)
        TIMES["substitution (store B)"] = time.monotonic() - started
        kinds = {n: s["kind"] for n, s in report["nodes"].items()}
        assert "domain-xml" in kinds.values() and report["failed"] == {}
        assert report["built"] == [] and sorted(report["substituted"]) == sorted(kinds), report
        _names_no_path_of(b.store, str(a.store))
        assert all(v.status == "ok" for v in _verdicts(b.store))

        vm = _vm_named(b)
        started = time.monotonic()
        try:
            b.run("up", "--yes")
            TIMES["up of the substituted VM (boot, ssh)"] = time.monotonic() - started
            assert b.ssh(vm, "cat", "/etc/debian_version").stdout.strip()
            _names_no_path_of(b.store, str(a.store))  # activation wrote nothing of A either
        finally:  # the stack is the session's: later modules bring up a VM of this name
            b.run("destroy", vm, "--yes", check=False)

        # a second VM on the same image: only its own few entries are new to the registry
        b.edit(lambda t: t.split("\n[store]\n")[0] + '\n[[vms]]\nname = "second"\n'
               + store_section(secret_key_file=str(tmp_path / "secret"),
                                push_to=registry.url, substituters=[registry.url],
                                trusted_keys=[secret.public]))
        in_netns(b, "build", "second")
        second = in_netns(b, "store", "push", "second")
        TIMES["bytes uploaded, first push"] = first_bytes
        TIMES["bytes uploaded, second VM"] = int(re.search(r"\((\d+) bytes\)",
                                                           second.stdout).group(1))
        assert TIMES["bytes uploaded, second VM"] < first_bytes / 10
        print("\n".join(f"{k}: {v:.1f}" for k, v in TIMES.items()))


def _vm_named(user: AivmUser) -> str:
    match = re.search(r'(?m)^active_vm = "([^"]+)"', user.config.read_text())
    return match.group(1) if match else "aivm"


def _verdicts(store: Path):  # type: ignore[no-untyped-def]
    from aivm.cache.verify import verify

    return verify(Store(store))


def _names_no_path_of(store: Path, other: str) -> None:
    """No file, link or manifest in `store` mentions `other` (entries are relocatable)."""
    needle = other.encode()
    for dirpath, _dirs, files in os.walk(store):
        for name in files:
            path = Path(dirpath, name)
            if path.is_symlink():
                assert other not in os.readlink(path), path
            elif path.stat().st_size < 64 << 20:
                assert needle not in path.read_bytes(), path
            else:
                _grep_big(path, needle)


def _grep_big(path: Path, needle: bytes) -> None:
    with open(path, "rb") as fh:
        tail = b""
        while chunk := fh.read(16 << 20):
            assert needle not in tail + chunk, path
            tail = chunk[-len(needle):]
