"""aivm/fsutil.py: the one atomic write and the one lock helper."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from aivm import fsutil


def test_atomic_write_replaces_and_syncs_the_file_and_its_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    synced: list[str] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(
        os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    fsutil.atomic_write(target, "new", mode=0o600)
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]  # no temp left
    assert len(synced) == 2 and synced[1] == os.path.realpath(tmp_path)


def test_atomic_write_failure_leaves_the_old_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f"
    target.write_text("old")

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        fsutil.atomic_write(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_lock_excludes_another_holder_until_released(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    assert not fsutil.is_locked(path)
    with fsutil.locked(path):
        assert fsutil.is_locked(path)
        with pytest.raises(fsutil.Busy):
            fsutil.open_lock(path, wait=False)
        with pytest.raises(fsutil.Busy):
            fsutil.open_lock(path, exclusive=False, wait=False)
    assert not fsutil.is_locked(path)
    with fsutil.locked(path, exclusive=False), fsutil.locked(path, exclusive=False, wait=False):
        assert fsutil.is_locked(path)  # shared holders share, an exclusive probe fails


def test_identity_is_the_same_for_two_spellings(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "l").symlink_to(tmp_path / "d")
    assert fsutil.identity(tmp_path / "l") == fsutil.identity(tmp_path / "d" / ".." / "d")
    assert fsutil.identity(tmp_path / "missing") is None


def test_open_lock_creates_the_lock_file_with_the_given_mode(tmp_path: Path) -> None:
    fd = fsutil.open_lock(tmp_path / "x.lock", mode=0o600)
    try:
        assert (tmp_path / "x.lock").stat().st_mode & 0o777 == 0o600
        with pytest.raises(fsutil.Busy):
            fsutil.open_lock(tmp_path / "x.lock", wait=False)
    finally:
        os.close(fd)


def _writers(tmp_path: Path) -> dict[str, tuple[Path, Callable[[], None]]]:
    from aivm.activate import snapshot
    from aivm.guest import ports, ssh
    state = tmp_path / "state" / "vms"
    return {
        "ssh.record_ip": (state / "box.json", lambda: ssh.record_ip("box", "10.0.0.2", "m")),
        "snapshot._write_restored": (state / "box.restored.json",
                                     lambda: snapshot._write_restored("box", 3, "10.0.0.2")),
        "ports._write": (state / "box.ports", lambda: ports._write(state / "box.ports", "x")),
    }


@pytest.mark.parametrize("writer", ["ssh.record_ip", "snapshot._write_restored", "ports._write"])
def test_state_writers_use_the_one_atomic_write(writer: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # the old copies wrote a fixed `<name>.tmp` sibling without fsync: a stale one (a crashed
    # or concurrent writer's) broke them, and a power cut could lose the rename
    target, write = _writers(tmp_path)[writer]
    from aivm import paths
    monkeypatch.setattr(paths, "user_state_dir", lambda: tmp_path / "state")
    target.parent.mkdir(parents=True)
    for stale in (target.with_suffix(".tmp"), target.with_suffix(target.suffix + ".tmp")):
        stale.mkdir(exist_ok=True)
    synced: list[Path] = []
    real = fsutil.fsync_dir
    monkeypatch.setattr(fsutil, "fsync_dir", lambda d: (synced.append(d), real(d)))
    write()
    assert target.is_file() and synced == [target.parent]
