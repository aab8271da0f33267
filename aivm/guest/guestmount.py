"""Guest-side mount scripts for the shared modes, run over ssh with sudo in the guest.

Each script is idempotent (`mountpoint -q` guards) and verifies its result,
so re-running `aivm attach` or `aivm code .` after a guest reboot restores
what is missing and changes nothing else.
"""

from __future__ import annotations

import shlex

from aivm.activate.plan import Action, Step
from aivm.guest import ssh
from aivm.guest.attachments import GUEST_ROOT, ROOT_TAG


def _q(text: str) -> str:
    return shlex.quote(text)


def mount_root_script(tag: str = ROOT_TAG, at: str = GUEST_ROOT) -> str:
    return (f"mkdir -p {_q(at)}\n"
            f"mountpoint -q {_q(at)} || mount -t virtiofs {_q(tag)} {_q(at)}\n"
            f"mountpoint -q {_q(at)}\n")


def bind_script(source: str, dst: str, *, ro: bool) -> str:
    """Bind `source` (inside the guest's shared-root mount) at `dst`."""
    lines = [f"test -d {_q(source)} || {{ echo 'not in the export: {source}' >&2; exit 3; }}",
             f"mkdir -p {_q(dst)}",
             f"mountpoint -q {_q(dst)} || mount --bind {_q(source)} {_q(dst)}"]
    if ro:
        lines.append(f"mount -o remount,bind,ro {_q(dst)}")
    lines.append(f"mountpoint -q {_q(dst)}")
    return "\n".join(lines) + "\n"


def virtiofs_script(tag: str, dst: str, *, ro: bool) -> str:
    opts = "-o ro " if ro else ""
    return (f"mkdir -p {_q(dst)}\n"
            f"mountpoint -q {_q(dst)} || mount -t virtiofs {opts}{_q(tag)} {_q(dst)}\n"
            f"mountpoint -q {_q(dst)}\n")


DROP_CACHES = "sync; echo 2 > /proc/sys/vm/drop_caches || true\n"


def unmount_script(dst: str) -> str:
    """Unmount `dst`, then drop cached dentries so virtiofsd can release the host's files."""
    return (f"if mountpoint -q {_q(dst)}; then umount {_q(dst)}; fi\n"
            + DROP_CACHES +
            f"! mountpoint -q {_q(dst)}\n")


def as_root(target: ssh.Target, script: str, meaning: str) -> Action:
    """`script` run by `sh -eu` under sudo in the guest."""
    return Action.command(ssh.command(target, ["sudo", "-n", "sh", "-euc", _q(script)],
                                      meaning=meaning), timeout=120)


def step(target: ssh.Target, title: str, why: str,
         scripts: tuple[tuple[str, str], ...]) -> Step:
    """A guest step of (meaning, script) pairs; it changes the VM, so it is approved."""
    return Step(title, why, tuple(as_root(target, s, m) for m, s in scripts))
