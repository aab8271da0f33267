"""What every host bind of a saved or new attachment is checked against, before any plan.

- The folder is reached from `/` without a symbolic link in any component (the saved
  path is the resolved one), and is the directory recorded at attach time: its
  (device, inode) is saved as `host_id` and compared at every restore.
- No attached folder lies inside another (shared modes: the guest could replace a
  component of the inner path and have the host bind whatever it points at).
- The folder passes the sensitive check (aivm/guest/sensitive.py) unless the user
  attached it with `--allow-sensitive`.

The root helper (aivm/guest/bindfd.py) repeats the symlink-free walk and the identity
check on the fds it mounts, so nothing changes between this check and the mount.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import stat
from pathlib import Path

from aivm.config.schema import Attachment, AttachMode
from aivm.errors import AivmError
from aivm.guest import sensitive


def walk_identity(path: Path) -> str:
    """"DEVICE:INODE" of the directory `path`, refusing a symlink in any component."""
    if not path.is_absolute() or any(p in (".", "..") for p in path.parts):
        raise _refused(path, "is not an absolute, normalised path", "not-absolute")
    here = Path("/")
    for part in path.parts[1:]:
        here = here / part
        try:
            st = os.lstat(here)
        except OSError as exc:
            raise AivmError(f"{path} cannot be reached: {here}: {exc.strerror}",
                            hint="if the folder is gone, detach it: "
                                 f"aivm detach {shlex.quote(str(path))}",
                            reason="attached-folder-missing") from None
        if stat.S_ISLNK(st.st_mode):
            raise _refused(path, f"passes through the symbolic link {here}", "symlink-in-path")
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise _refused(path, "is not a directory", "not-a-directory")
    return f"{st.st_dev}:{st.st_ino}"


def _refused(path: Path, why: str, reason: str) -> AivmError:
    return AivmError(f"refusing to bind {path}: it {why}",
                     hint="the host never follows a link a guest could have planted; attach "
                          "the real folder, or detach this one: "
                          f"aivm detach {shlex.quote(str(path))}", reason=reason)


def nested(att: Attachment, atts: tuple[Attachment, ...]) -> Attachment | None:
    """Another attachment (any VM) inside `att`'s folder or containing it; two git-mode
    attachments may nest (the host folder is never exposed in git mode)."""
    me = Path(att.host_path).expanduser()
    for other in atts:
        there = Path(other.host_path).expanduser()
        if there == me or (att.mode is AttachMode.GIT and other.mode is AttachMode.GIT):
            continue
        if there in me.parents or me in there.parents:
            return other
    return None


def refuse_nested(att: Attachment, atts: tuple[Attachment, ...]) -> None:
    other = nested(att, atts)
    if other is None:
        return
    inner, outer = sorted((att.host_path, other.host_path), key=len, reverse=True)
    raise AivmError(
        f"refusing to attach {att.host_path}: {inner} lies inside {outer}, attached to "
        f"VM {other.vm} ({other.mode})",
        hint="a guest that can write the outer folder could replace the inner one with a "
             "link; attach only the outer folder, or detach one of them: "
             f"aivm detach {shlex.quote(other.host_path)} --vm {other.vm}",
        reason="nested-attachment")


def vet_new(att: Attachment, atts: tuple[Attachment, ...],
            ctx: sensitive.Context) -> tuple[Attachment, str | None]:
    """An attachment the user names now: record its identity; its sensitive warning."""
    found = dataclasses.replace(att, host_id=walk_identity(Path(att.host_path)))
    refuse_nested(found, atts)
    return found, sensitive.check(Path(att.host_path), ctx, allow=att.allow_sensitive)


def vet_saved(att: Attachment, atts: tuple[Attachment, ...],
              ctx: sensitive.Context) -> Attachment:
    """A saved attachment about to be restored: the same folder, still safe to bind (a
    hand-written `~/...` path is expanded)."""
    att = dataclasses.replace(att, host_path=str(Path(att.host_path).expanduser()))
    now = walk_identity(Path(att.host_path))
    if att.host_id and att.host_id != now:
        raise AivmError(
            f"refusing to restore {att.host_path}: it is not the folder that was attached "
            f"(device:inode {now}, recorded {att.host_id})",
            hint="if you replaced the folder yourself, attach it again to record it: "
                 f"aivm attach {shlex.quote(att.host_path)} --vm {att.vm}",
            reason="attached-folder-changed")
    refuse_nested(att, atts)
    sensitive.check(Path(att.host_path), ctx, allow=att.allow_sensitive)
    return dataclasses.replace(att, host_id=now)
