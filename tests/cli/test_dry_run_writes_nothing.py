"""`aivm up --dry-run` on a machine with no config writes nothing and starts nothing.

aivm runs as a subprocess. HOME is an empty tmp tree (config, state and store
all under it); PATH starts with shims that log every run of
qemu-system-x86_64, ssh-keygen and ip before running the real tool (ip) or
nothing (the others). The accel check is made to pass its file checks, so a
real run would start the QEMU probe guest here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aivm.paths import CHECKOUT

# aivm's entry point on a host where KVM passes the file checks (so `auto` needs the probe)
KVM_HOST_AIVM = ("import aivm.activate.accel as a; a.static_problem = lambda host: ''; "
                 "from aivm.cli.main import main; main()")
LOGGED = ("qemu-system-x86_64", "ssh-keygen", "ip")


def _shims(bin_dir: Path, log: Path) -> None:
    import shutil

    bin_dir.mkdir()
    for tool in LOGGED:
        real = shutil.which(tool)
        tail = f'exec {real} "$@"\n' if tool == "ip" and real else "exit 0\n"
        shim = bin_dir / tool
        shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n{tail}')
        shim.chmod(0o755)


@pytest.fixture
def empty_home(tmp_path: Path) -> tuple[Path, Path]:
    home, log = tmp_path / "home", tmp_path / "ran.log"
    home.mkdir()
    _shims(tmp_path / "bin", log)
    return home, log


def aivm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # any download goes to a closed port on loopback: no traffic leaves this host
    env = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HOME": str(home), "PATH": f"{home.parent / 'bin'}:{os.environ['PATH']}",
           "AIVM_STORE": str(home / "store"), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(CHECKOUT), "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-c", KVM_HOST_AIVM, "--connect", "test:///default",
                           *args], env=env, cwd=home.parent, capture_output=True, text=True,
                          timeout=120, check=False)


def _ran(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("command", ["up", "build"])
def test_dry_run_without_config_writes_and_starts_nothing(
        empty_home: tuple[Path, Path], command: str) -> None:
    home, log = empty_home
    result = aivm(home, command, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
    # only read-only queries: the routes that pick the subnet it would write, and for `up`
    # the host-network check (aivm/activate/hostnet.py: links, addresses, routes)
    reads = ["ip -j link", "ip -j -4 addr", "ip -j -4 route"] if command == "up" else []
    assert _ran(log) == ["ip -j route show table all", *reads]
    err = result.stderr
    assert (f"no config at {home}/.config/aivm/config.toml: without --dry-run, aivm would "
            f"write it and create the ssh key {home}/.ssh/aivm_ed25519 (ssh-keygen):") in err
    assert '  | ssh_pubkey = "~/.ssh/aivm_ed25519.pub"' in err.splitlines()
    assert ("note: accel = auto is not probed yet (a dry run starts no QEMU probe): "
            "this dry run assumes kvm; `aivm up` runs the probe") in err
    if command == "up":
        assert result.stdout.splitlines()[0] == "would build 6 node(s):"
        assert "  aivm-2404.seed: never built" in result.stdout.splitlines()
    else:
        assert "aivm-2404.seed" in result.stdout and "never built" in result.stdout


def test_host_net_create_dry_run_builds_nothing_into_the_store(
        empty_home: tuple[Path, Path]) -> None:
    """It used to build the network's node into the store to show its plan."""
    home, log = empty_home
    result = aivm(home, "host", "net", "create", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
    assert _ran(log) == ["ip -j route show table all"]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("would build ") and "  net.aivm: never built" in lines
    stale = [line.split(":")[0].strip() for line in lines[1:-1]]
    assert lines[-1] == (f"the plan depends on them: `aivm build {' '.join(stale)}`, then run "
                         "this command again with --dry-run to see it")


def test_the_same_up_without_dry_run_would_write_and_probe(
        empty_home: tuple[Path, Path]) -> None:
    """The control: without --dry-run the same command writes the config and runs both."""
    home, log = empty_home
    result = aivm(home, "up", "--no-wait")
    assert (home / ".config" / "aivm" / "config.toml").is_file(), result.stderr
    # the shim made no key, so the build stops before any download (the proxy is a safety net)
    assert "aivm_ed25519.pub: No such file or directory" in result.stderr
    ran = [line.split()[0] for line in _ran(log)]
    assert "ssh-keygen" in ran and "qemu-system-x86_64" in ran
