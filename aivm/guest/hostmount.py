"""Host-side bind mounts for the shared modes; never touches the user's tree itself.

shared-root: `<state>/<vm>/shared-root` is exported once over virtiofs; it is
made a shared mount point of its own *before* virtiofsd starts, so that the
per-folder bind mounts added later (`<export>/<slug>`) propagate into
virtiofsd's mount namespace even on hosts whose `/` is private (no systemd).
shared with `ro`: the folder is exported through a read-only bind under
`<state>/<vm>/ro/<slug>`, so the host side enforces read-only too.

Only aivm's own directories are created; ownership and permissions of the
attached folders are never changed.

`AIVM_HYPERVISOR_PID`: when libvirtd runs in a mount namespace of its own (the
real-stack test harness), every mount command runs there (`nsenter -t PID -m`)
and mount state is read from that process's mountinfo.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aivm import paths
from aivm.activate.plan import Action, Privilege, Step
from aivm.guest import attachments
from aivm.run import Cmd


def export_dir(vm: str) -> Path:
    return paths.vm_state_dir(vm) / "shared-root"


def ro_dir(vm: str) -> Path:
    return paths.vm_state_dir(vm) / "ro"


def _prefix() -> tuple[str, ...]:
    pid = os.environ.get("AIVM_HYPERVISOR_PID", "")
    return ("nsenter", "-t", pid, "-m", "--") if pid else ()


def mountinfo() -> Path:
    pid = os.environ.get("AIVM_HYPERVISOR_PID", "")
    return Path(f"/proc/{pid or 'self'}/mountinfo")


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts(text: str | None = None) -> dict[str, set[str]]:
    """Mount point -> its options (from mountinfo), for the hypervisor's namespace."""
    out: dict[str, set[str]] = {}
    for line in (mountinfo().read_text() if text is None else text).splitlines():
        fields = line.split()
        if len(fields) > 5:
            out[_unescape(fields[4])] = set(fields[5].split(","))
    return out


def is_mounted(path: Path, text: str | None = None) -> bool:
    return str(path) in mounts(text)


def root_cmd(*argv: str, meaning: str) -> Cmd:
    return Cmd.of(*_prefix(), *argv, meaning=meaning, root=True)


def _mkdir(path: Path) -> Action:
    return Action.command(root_cmd("mkdir", "-p", "--", str(path),
                                   meaning=f"create aivm's directory {path}"))


HELPER = Path(__file__).with_name("bindfd.py")


def helper_cmd(*args: str, meaning: str) -> Cmd:
    """The root helper that binds and unbinds through fds, never following a symlink
    (`-I`: no PYTHONPATH, no user site, not the current folder on sys.path)."""
    return root_cmd(sys.executable, "-I", str(HELPER), *args, meaning=meaning)


def _bind(source: Path, identity: str, target: Path, ro: bool) -> tuple[Action, ...]:
    how = " read-only" if ro else ""
    return (Action.command(helper_cmd(
        "bind", str(source), identity, str(_real(target.parent)), target.name,
        *(("ro",) if ro else ()),
        meaning=f"bind {source} (device:inode {identity}) at {target}{how}, walking both "
                "paths without following symlinks")),)


def _real(path: Path) -> Path:
    """aivm's own directories, resolved here (the guest cannot write them)."""
    return Path(os.path.realpath(path))


def prepare_root_step(vm: str) -> Step | None:
    """Make the VM's export a shared mount point (once per host boot)."""
    root = export_dir(vm)
    if is_mounted(root):
        return None
    return Step(f"Prepare the shared-root export of VM {vm}",
                "one virtiofs export per VM; folders are bind-mounted under it, and it must be "
                "a shared mount so that later binds reach virtiofsd",
                (_mkdir(root),
                 Action.command(root_cmd("mount", "--bind", "--", str(root), str(root),
                                         meaning=f"make {root} a mount point")),
                 Action.command(root_cmd("mount", "--make-shared", "--", str(root),
                                         meaning="let later bind mounts propagate to virtiofsd"))),
                Privilege.ROOT)


def bind_target(vm: str, folder: Path) -> Path:
    return export_dir(vm) / attachments.slug(folder)


def ro_target(vm: str, folder: Path) -> Path:
    return ro_dir(vm) / attachments.slug(folder)


def bind_step(vm: str, folder: Path, target: Path, *, ro: bool, identity: str) -> Step | None:
    """`identity`: the folder's "DEVICE:INODE" as recorded and checked (aivm/guest/vetting.py)."""
    if is_mounted(target):
        return None
    how = "read-only" if ro else "read-write"
    return Step(f"Bind {folder} into the export of VM {vm} ({how})",
                "the guest sees host folders only through aivm's own export directory",
                _bind(folder, identity, target, ro), Privilege.ROOT)


def unbind_step(vm: str, target: Path) -> Step | None:
    if not is_mounted(target) and not target.exists():
        return None
    return Step(f"Remove the host bind mount {target}",
                f"the folder is no longer shared with VM {vm}", (unbind_action(target),),
                Privilege.ROOT)


def unbind_action(target: Path) -> Action:
    """Unmount (lazily: virtiofsd keeps O_PATH handles until the guest forgets them, so a
    plain umount says "target is busy", measured) and remove the mount point, reaching it
    without following symlinks: the guest can write the export directory."""
    return Action.command(helper_cmd(
        "unbind", str(_real(target.parent)), target.name,
        meaning=f"unmount {target} lazily (if mounted) and remove the mount point, without "
                "following symlinks"))


def leftovers(vm: str, text: str | None = None) -> tuple[str, ...]:
    """Mount points aivm made for `vm` that are still mounted (for destroy and tests)."""
    state = str(paths.vm_state_dir(vm)) + "/"
    return tuple(sorted(m for m in mounts(text) if m.startswith(state)))
