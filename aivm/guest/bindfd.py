"""Bind a host folder into aivm's export as root without following a single symlink.

Run as root (`python -I bindfd.py ...`, standard library only, never imported from the
project's code path at run time), so that no path component a guest can write is ever
followed by the host:

  bind   SOURCE DEV:INO PARENT NAME [ro]   mount SOURCE at PARENT/NAME
  unbind PARENT NAME                       unmount PARENT/NAME (if mounted) and remove it

Every path is opened one component at a time with O_PATH | O_NOFOLLOW from `/`: a
symbolic link anywhere (or `.`/`..`) refuses. SOURCE must be the directory recorded
at attach time (device, inode). NAME is created inside PARENT (itself walked the same
way) and must be a real directory. The mount is made with the fd-based mount API
(open_tree, mount_setattr, move_mount; Linux 5.12+): the objects checked are the ones
mounted, read-only from the first moment when asked, so there is no window to swap
a path. Exit 2 with one line on stderr when something is refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
import sys

O_WALK = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442

_libc = ctypes.CDLL(None, use_errno=True)


class Refused(Exception):
    pass


def walk(path: str, *, create: bool = False) -> int:
    """An O_PATH fd of the directory `path`, reached without following any symlink;
    with `create`, missing components are made (0755, root's)."""
    if not path.startswith("/"):
        raise Refused(f"{path} is not an absolute path")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise Refused(f"{path} has a . or .. component")
    fd = os.open("/", O_WALK | os.O_DIRECTORY)
    for i, part in enumerate(parts):
        try:
            fd = _step(fd, part, create)
        except Refused as exc:
            raise Refused(f"{'/' + '/'.join(parts[:i + 1])}: {exc}") from None
    return fd


def _step(parent: int, name: str, create: bool) -> int:
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
    try:
        fd = os.open(name, O_WALK, dir_fd=parent)
    except OSError as exc:
        raise Refused(exc.strerror or str(exc)) from None
    finally:
        os.close(parent)
    mode = os.fstat(fd).st_mode
    if stat.S_ISLNK(mode):
        os.close(fd)
        raise Refused("is a symbolic link (refusing to follow it)")
    if not stat.S_ISDIR(mode):
        os.close(fd)
        raise Refused("is not a directory")
    return fd


def _identity(fd: int) -> str:
    st = os.fstat(fd)
    return f"{st.st_dev}:{st.st_ino}"


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _syscall(number: int, *args: object) -> int:
    return int(_libc.syscall(ctypes.c_long(number), *args))


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_fd(source: int, target: int, *, ro: bool) -> None:
    """Clone the mount at `source` (not recursive, like `mount --bind`) onto `target`."""
    empty = ctypes.c_char_p(b"")
    tree = _check(_syscall(SYS_OPEN_TREE, ctypes.c_int(source), empty,
                           ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH)),
                  "open_tree")
    try:
        if ro:
            attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
            _check(_syscall(SYS_MOUNT_SETATTR, ctypes.c_int(tree), empty,
                            ctypes.c_uint(AT_EMPTY_PATH), ctypes.byref(attr),
                            ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr")
        _check(_syscall(SYS_MOVE_MOUNT, ctypes.c_int(tree), empty, ctypes.c_int(target),
                        empty, ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)),
               "move_mount")
    finally:
        os.close(tree)


def bind(source: str, expected: str, parent: str, name: str, ro: bool) -> str:
    src = walk(source)
    if _identity(src) != expected:
        raise Refused(f"{source} is not the folder that was attached (device:inode "
                      f"{_identity(src)}, recorded {expected})")
    par = walk(parent, create=True)
    if "/" in name or name in ("", ".", ".."):
        raise Refused(f"bad mount point name {name!r}")
    try:
        target = _step(os.dup(par), name, create=True)
    except Refused as exc:
        raise Refused(f"{parent}/{name}: {exc}") from None
    if _identity(target) == expected:
        return f"{parent}/{name} already binds {source}"
    mount_fd(src, target, ro=ro)
    after = _step(par, name, create=False)
    if _identity(after) != expected:   # cannot happen with fds; never leave a wrong mount
        os.close(after)
        unbind(parent, name)
        raise Refused(f"{parent}/{name} does not show {source} after the bind")
    return f"bound {source} at {parent}/{name}" + (" read-only" if ro else "")


def unbind(parent: str, name: str) -> str:
    par = walk(parent)
    try:
        st = os.stat(name, dir_fd=par, follow_symlinks=False)
    except FileNotFoundError:
        return f"{parent}/{name} is already gone"
    if stat.S_ISLNK(st.st_mode):
        raise Refused(f"{parent}/{name} is a symbolic link (not aivm's mount point)")
    here = f"/proc/self/fd/{par}/{name}".encode()
    if _libc.umount2(ctypes.c_char_p(here), ctypes.c_int(MNT_DETACH | UMOUNT_NOFOLLOW)) < 0:
        err = ctypes.get_errno()
        if err != 22:   # EINVAL: not a mount point (an empty leftover directory)
            raise OSError(err, f"umount {parent}/{name}: {os.strerror(err)}")
    try:
        os.rmdir(name, dir_fd=par)
    except OSError as exc:
        if exc.errno != 39:   # ENOTEMPTY: the guest left files in an export (teardown)
            raise
        return f"unmounted {parent}/{name} (kept: not empty)"
    return f"unmounted and removed {parent}/{name}"


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["bind"] and len(argv) in (5, 6):
            print(bind(argv[1], argv[2], argv[3], argv[4], argv[5:] == ["ro"]))
        elif argv[:1] == ["unbind"] and len(argv) == 3:
            print(unbind(argv[1], argv[2]))
        else:
            print(__doc__, file=sys.stderr)
            return 64
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
