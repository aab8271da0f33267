"""The guest mount scripts, run for real in a private mount namespace on this host.

They run in the guest as root over ssh; here `unshare --mount` gives the
same semantics (bind, remount read-only, unmount) without a VM and without
touching the host's mounts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from aivm.guest import gitmode, guestmount

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and unshare")


def in_private_ns(script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a private mount namespace (not dropping this host's page cache)."""
    script = script.replace(guestmount.DROP_CACHES, "")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-euc",
                           script], text=True, capture_output=True)


@needs_root
def test_bind_rw_then_unmount(tmp_path: Path) -> None:
    src, dst = tmp_path / "export" / "proj-1", tmp_path / "guest" / "proj"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("from host")
    script = (guestmount.bind_script(str(src), str(dst), ro=False)
              + guestmount.bind_script(str(src), str(dst), ro=False)   # idempotent
              + f"cat {dst}/a.txt; echo guest > {dst}/b.txt\n"
              + guestmount.unmount_script(str(dst)) + guestmount.unmount_script(str(dst))
              + f"test ! -e {dst}/a.txt && echo gone\n")
    done = in_private_ns(script)
    assert (done.returncode, done.stdout, done.stderr) == (0, "from hostgone\n", "")
    assert (src / "b.txt").read_text() == "guest\n"


@needs_root
def test_bind_read_only_refuses_writes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    script = guestmount.bind_script(str(src), str(dst), ro=True) + f"touch {dst}/x\n"
    done = in_private_ns(script)
    assert done.returncode == 1 and "Read-only file system" in done.stderr
    assert not (src / "x").exists()


@needs_root
def test_bind_of_a_missing_export_entry_fails_clearly(tmp_path: Path) -> None:
    done = in_private_ns(guestmount.bind_script(str(tmp_path / "nope"), str(tmp_path / "d"),
                                                ro=False))
    assert done.returncode == 3 and done.stderr == f"not in the export: {tmp_path}/nope\n"


def test_scripts_quote_hostile_paths() -> None:
    script = guestmount.bind_script("/run/aivm/shared-root/a-1", "/tmp/x y;rm -rf z", ro=True)
    assert "'/tmp/x y;rm -rf z'" in script and " z'" in script
    assert guestmount.virtiofs_script("tag1", "/p q", ro=True).splitlines()[1] == (
        "mountpoint -q '/p q' || mount -t virtiofs -o ro tag1 '/p q'")


def test_guest_git_init_script_makes_a_push_target(tmp_path: Path) -> None:
    dst = tmp_path / "guest repo"
    script = gitmode.guest_init_script(str(dst), "main")
    for _ in range(2):   # idempotent
        subprocess.run(["sh", "-euc", script], check=True)
    got = subprocess.run(["git", "-C", str(dst), "config", "receive.denyCurrentBranch"],
                         text=True, capture_output=True, check=True).stdout
    head = (dst / ".git" / "HEAD").read_text()
    assert (got, head) == ("updateInstead\n", "ref: refs/heads/main\n")
