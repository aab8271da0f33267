"""A no-op `aivm build` imports only what it needs: the accel probe, networkx, jinja2,
cryptography and the thread pool stay off its path (each costs milliseconds of start-up,
and a no-op build should cost little more than Python's own start-up)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aivm.host import facts

OFF_THE_NOOP_PATH = ("aivm.activate.accel", "networkx", "jinja2", "cryptography",
                     "urllib.request", "concurrent.futures", "rich", "libvirt")

RUN = """
import json, sys
sys.argv = ["aivm", "build"]
from aivm.cli.main import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(sys.modules)))
"""


def _aivm_build(env: dict[str, str], cwd: Path) -> set[str]:
    done = subprocess.run([sys.executable, "-c", RUN], env=env, cwd=cwd, text=True,
                          capture_output=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_a_noop_build_imports_none_of_the_heavy_modules(tmp_path: Path) -> None:
    if not facts.boot_id() or shutil.which("qemu-img") is None:
        pytest.skip("needs a boot id (the accel cache's key) and qemu-img")
    home, image = tmp_path / "home", tmp_path / "image.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheNoopImportTest t@aivm\n")
    state = home / ".local" / "state" / "aivm"
    state.mkdir(parents=True)    # the probe's per-boot cache, so the build needs no QEMU probe
    (state / "accel.json").write_text(json.dumps({
        "version": facts.ACCEL_CACHE_VERSION, "boot_id": facts.boot_id(), "accel": "qemu",
        "reason": "test"}))
    config = home / ".config" / "aivm" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[[vms]]\nname = "box"\nimage = "local"\n\n[[images]]\nname = "local"\n'
                      f'url = "{image}"\nsha256 = ""\n\n[[networks]]\nname = "aivm"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AIVM_"))}
    env.update(HOME=str(home), AIVM_STORE=str(tmp_path / "store"),
               AIVM_STATE=str(tmp_path / "state"))
    _aivm_build(env, home)                                   # builds every node
    loaded = _aivm_build(env, home)                          # the no-op build
    assert "aivm.graph.scheduler" in loaded and "aivm.config.to_graph" in loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in OFF_THE_NOOP_PATH
                   or m in OFF_THE_NOOP_PATH)
    assert heavy == [], f"a no-op build imported {heavy}"
