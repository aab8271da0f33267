"""File-system helpers used wherever aivm writes state: one atomic write, one lock.

`atomic_write` writes a temporary sibling, fsyncs it, renames it over the
target and fsyncs the directory, so a crash leaves the old or the new content,
never a torn file, and the new name survives a power cut. `locked` / `try_lock`
are flock(2) on a lock file: the lock belongs to the open file, so it ends when
the holder closes it or dies, and two threads of one process exclude each other
as two processes do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


class Busy(Exception):
    """The lock is held by someone else (raised only when not waiting)."""


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what `path` names, symlinks followed; None when it cannot be read.
    Two spellings of one file (a symlink, a bind mount, `sub/..`) have one identity."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(top: Path) -> None:
    """fsync every regular file and every directory under `top` (itself included)."""
    for dirpath, _dirs, files in os.walk(top, topdown=False):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(Path(dirpath))


def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o644,
                 durable: bool = True) -> None:
    """Replace `path` with `data`: temp in the same directory, fsync, rename, fsync dir.

    `durable=False` skips both fsyncs (for caches that may be lost, never torn)."""
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def replace_symlink(link: Path, target: str) -> None:
    """Point `link` at `target` atomically (symlink a temp name, rename, fsync dir)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{id(link)}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def open_lock(path: Path, *, exclusive: bool = True, wait: bool = True,
              mode: int = 0o644) -> int:
    """An fd holding flock on `path` (created with `mode` when missing); raises Busy when
    not waiting.

    The caller owns the fd: the lock ends when it is closed (or the process ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Busy(str(path)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def locked(path: Path, *, exclusive: bool = True, wait: bool = True) -> Iterator[int]:
    """Hold flock on `path` for the `with` block; raises Busy when not waiting."""
    fd = open_lock(path, exclusive=exclusive, wait=wait)
    try:
        yield fd
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
    """True when some open file holds a lock on `path` (a live holder); False when free
    or absent. Probing takes and drops the lock at once."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
