"""`aivm cp` without a guest: which side is the VM, refusals, and the tool's argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivm.errors import AivmError
from aivm.guest import copy, ssh

VMS = frozenset({"box", "dev"})


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "dir").mkdir()
    return tmp_path


def target() -> ssh.Target:
    return ssh.Target("box", "agent", "10.0.0.9", Path("/k"))


def test_a_vm_prefix_only_when_it_names_a_vm() -> None:
    assert copy.endpoint("box:/srv", VMS) == copy.Endpoint("box", "/srv")
    assert copy.endpoint("box:", VMS) == copy.Endpoint("box", ".")
    assert copy.endpoint("other:/srv", VMS) == copy.Endpoint(None, "other:/srv")
    assert copy.endpoint("./box:x", VMS) == copy.Endpoint(None, "./box:x")


def test_upload_and_download() -> None:
    up = copy.transfer(("a.txt", "dir", "box:in/"), VMS)
    assert up == copy.Transfer("box", ("a.txt", "dir"), "in/", True)
    down = copy.transfer(("box:in/a.txt", "box:in/dir", "."), VMS)
    assert down == copy.Transfer("box", ("in/a.txt", "in/dir"), ".", False)


@pytest.mark.parametrize("args, words", [
    (("a.txt", "dir"), "no side of the copy names a VM"),
    (("box:x", "dev:y"), "one side of the copy must be the host"),
    (("box:x", "a.txt", "dir"), "one side of the copy must be the host"),
    (("a.txt", "box:x", "dev:y"), "one side of the copy must be the host"),
    (("missing.txt", "box:x"), "no such file or folder: missing.txt"),
    (("a.txt",), "needs at least one source and a destination"),
])
def test_refusals(args: tuple[str, ...], words: str) -> None:
    with pytest.raises(AivmError, match=words):
        copy.transfer(args, VMS)


def test_scp_when_the_guest_has_no_rsync(home: Path) -> None:
    t = copy.transfer(("a.txt", "dir", "box:in/"), VMS)
    cmd = copy.command(t, target(), copy.Tools(rsync=False, sftp=True), host_rsync=True,
                       progress=False)
    config = str(home / "xdg" / "aivm" / "ssh_config")
    assert cmd.argv == ("scp", "-F", config, "-o", "BatchMode=yes", "-r", "-p", "-q",
                        "a.txt", "dir", "box:in/") and cmd.in_netns
    legacy = copy.command(t, target(), copy.Tools(rsync=False, sftp=False), host_rsync=True,
                          progress=True)
    assert "-O" in legacy.argv and "-q" not in legacy.argv


def test_rsync_when_both_sides_have_it(home: Path) -> None:
    t = copy.transfer(("box:in/a.txt", "out"), VMS)
    cmd = copy.command(t, target(), copy.Tools(rsync=True, sftp=True), host_rsync=True,
                       progress=True)
    config = str(home / "xdg" / "aivm" / "ssh_config")
    assert cmd.argv == ("rsync", "-a", "--info=progress2", "-e",
                        f"ssh -F {config} -o BatchMode=yes", "box:in/a.txt", "out")
    no_host = copy.command(t, target(), copy.Tools(rsync=True, sftp=True), host_rsync=False,
                           progress=True)
    assert no_host.argv[0] == "scp"
