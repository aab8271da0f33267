"""The VM's writable disk, and whether the hypervisor can read the store.

The store keeps the pristine overlay; each VM writes to a thin qcow2 of its
own, backed by that overlay, under its state dir (`aivm.paths.vm_state_dir`).
`--recreate` throws that disk away and takes a new one: no download, no
re-render. Creating it is a step of commands, as root when the state dir is
not writable by the user.

QEMU runs as the hypervisor's user (`libvirt-qemu` on Debian), so every
directory above a store image needs search (x) permission for that user and
the image itself read (r) permission. `unreadable` finds what is missing,
`access_step` is the previewed fix, `require_readable` fails early with it.
POSIX ACLs are not consulted: a path they open counts as unreadable.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aivm import paths, qcow2
from aivm.activate import plan as plans
from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.errors import AivmError
from aivm.run import Cmd

DISK_NAME = "disk.qcow2"


def disk_path(vm: str) -> Path:
    return paths.vm_state_dir(vm) / DISK_NAME


def needs_root(path: Path) -> bool:
    """Whether creating `path` needs root: its nearest existing ancestor is not writable."""
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return not os.access(probe, os.W_OK | os.X_OK)


def backing_of(disk: Path) -> Path | None:
    """The backing file named in a qcow2 header (no subprocess, no image lock), or None."""
    return qcow2.backing_of(disk)


def create_actions(backing: Path, dest: Path, *, root: bool,
                   recreate: bool = False) -> tuple[Action, ...]:
    """Commands that (re)create `dest` as a thin qcow2 on top of `backing`."""
    drop = Cmd.of("rm", "-f", "--", str(dest), root=root,
                  meaning="throw away the VM's writable disk")
    first = (Action.command(drop),) if recreate else ()
    return first + (
        Action.command(Cmd.of("mkdir", "-p", "--", str(dest.parent), root=root,
                              meaning=f"make the VM's state dir {dest.parent}")),
        Action.command(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                              "-b", str(backing), str(dest), root=root,
                              meaning="create a thin qcow2 backed by the store image")),
    )


def disk_plan(vm: str, backing: Path, *, dest: Path | None = None, recreate: bool = False) -> Plan:
    """Give `vm` its writable disk when it has none; with `recreate`, replace it.

    An existing disk backed by another image is kept (it holds the guest's
    changes) with a note saying how to take the new one. Stop the VM before
    a recreate step runs.
    """
    dest = dest or disk_path(vm)
    root = needs_root(dest)
    privilege = Privilege.ROOT if root else Privilege.USER
    effect = Effect.SYSTEM_WRITE if root else Effect.USER_WRITE
    if dest.exists() and not recreate:
        current = backing_of(dest)
        if current is not None and current != backing:
            return plans.of(f"disk of VM {vm} is backed by {current}, the store now has "
                            f"{backing}: `aivm up --recreate {vm}` takes the new image "
                            "(the guest's changes are lost)")
        return plans.of(f"disk of VM {vm}: kept ({dest})")
    if dest.exists():
        title, why = (f"Recreate the writable disk of VM {vm}",
                      "--recreate: the guest's changes are thrown away, the store image is reused")
    else:
        title, why = f"Give VM {vm} its writable disk", f"VM {vm} has no writable disk yet"
    actions = create_actions(backing, dest, root=root, recreate=dest.exists())
    return plans.of(Step(title, why, actions, privilege, effect))


# ---- can the hypervisor read the store? ------------------------------------------------------

DEFAULT_HYPERVISOR_USERS = ("libvirt-qemu", "qemu")


def hypervisor_user(qemu_conf: Path = Path("/etc/libvirt/qemu.conf")) -> str:
    """The user QEMU runs as: `user =` in qemu.conf, else the distribution's default."""
    import pwd

    try:
        for line in qemu_conf.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip() == "user" and value.strip().strip('"'):
                return value.strip().strip('"').lstrip("+")
    except OSError:
        pass
    for user in DEFAULT_HYPERVISOR_USERS:
        try:
            pwd.getpwnam(user)
            return user
        except KeyError:
            continue
    return "nobody"


@dataclass(frozen=True)
class Identity:
    uid: int
    gids: frozenset[int]

    @classmethod
    def of(cls, user: str) -> Identity:
        import grp
        import pwd

        try:
            entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        except KeyError:
            return cls(-1, frozenset())  # unknown user: only "other" bits apply
        groups = {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
        return cls(entry.pw_uid, frozenset(groups | {entry.pw_gid}))

    def may(self, st: os.stat_result, bit: str) -> bool:
        if self.uid == 0:
            return True
        shift = {"r": 2, "w": 1, "x": 0}[bit]
        if st.st_uid == self.uid:
            return bool(st.st_mode & (stat.S_IXUSR << shift))
        if st.st_gid in self.gids:
            return bool(st.st_mode & (stat.S_IXGRP << shift))
        return bool(st.st_mode & (stat.S_IXOTH << shift))


@dataclass(frozen=True)
class AccessProblem:
    path: Path
    need: str  # "x" for a directory on the way, "r" for the file itself

    @property
    def line(self) -> str:
        what = "cannot enter directory" if self.need == "x" else "cannot read"
        return f"{what} {self.path}"


def unreadable(files: Iterable[Path], user: str) -> tuple[AccessProblem, ...]:
    """What keeps `user` from reading each of `files`, parents first, each path once."""
    who = Identity.of(user)
    found: dict[Path, AccessProblem] = {}
    for file in files:
        file = file.absolute()
        for directory in reversed(file.parents):
            _check(who, directory, "x", found)
        _check(who, file, "r", found)
    return tuple(found.values())


def _check(who: Identity, path: Path, bit: str, found: dict[Path, AccessProblem]) -> None:
    if path in found:
        return
    try:
        st = path.stat()
    except OSError:
        return  # a missing path is another error, reported by whoever needs it
    if not who.may(st, bit):
        found[path] = AccessProblem(path, bit)


def access_step(problems: tuple[AccessProblem, ...], user: str) -> Step | None:
    """The previewed fix: `chmod o+x` on directories, `chmod o+r` on files."""
    if not problems:
        return None
    dirs = [str(p.path) for p in problems if p.need == "x"]
    files = [str(p.path) for p in problems if p.need == "r"]
    root = any(_owner(p.path) != os.geteuid() for p in problems)
    actions: list[Action] = []
    if dirs:
        actions.append(Action.command(Cmd.of("chmod", "o+x", "--", *dirs, root=root,
                                             meaning="let others enter the directories on the way "
                                                     "(search only, no listing)")))
    if files:
        actions.append(Action.command(Cmd.of("chmod", "o+r", "--", *files, root=root,
                                             meaning="let others read the store images")))
    return Step(f"Let the hypervisor ({user}) read the store",
                "; ".join(p.line for p in problems),
                tuple(actions), Privilege.ROOT if root else Privilege.USER, Effect.SYSTEM_WRITE)


def _owner(path: Path) -> int:
    try:
        return path.stat().st_uid
    except OSError:
        return -1


def require_readable(files: Iterable[Path], user: str | None = None) -> None:
    """Fail early (`store-unreadable`) with the fix command when QEMU could not read a file."""
    user = user or hypervisor_user()
    problems = unreadable(files, user)
    step = access_step(problems, user)
    if step is None:
        return
    fix = "; ".join(a.shown for a in step.actions)
    raise AivmError(f"the hypervisor user {user} cannot read the store: {problems[0].line}"
                    + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                    hint=f"run: {fix}", reason="store-unreadable")
