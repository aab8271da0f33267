"""Attachment rules: which mode and access a folder gets, and where it lands in the guest.

- A new folder gets `shared-root` unless `--mode` says otherwise.
- Omitting `--mode` reuses the saved mode of the (folder, VM) pair; an explicit
  different mode is an error whose hint shows the detach + attach commands.
- `--access` and `--guest_dst` likewise default to the saved values.
- Shared modes land at the same absolute path in the guest; git mode under the
  guest user's home (its path relative to the host home, else its basename).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from pathlib import Path

from aivm.config.schema import Access, Attachment, AttachMode, Config, Vm
from aivm.errors import AivmError
from aivm.recipes.base import SHARED_ROOT_TAG

ROOT_TAG = SHARED_ROOT_TAG       # the one virtiofs tag of a VM's shared-root export
GUEST_ROOT = "/run/aivm/shared-root"  # where the guest mounts that export


def folder_of(path: str | os.PathLike[str]) -> Path:
    """The absolute, symlink-free folder; refuse what is not a directory."""
    try:
        folder = Path(os.path.realpath(Path(path).expanduser()))
        is_dir = folder.is_dir()
    except OSError as exc:   # /proc/1/cwd: the link itself cannot be read
        raise AivmError(f"{path} cannot be resolved: {exc.strerror}",
                        hint="attach a folder you can read, by its real path",
                        reason="unreadable-folder") from None
    if not is_dir:
        raise AivmError(f"{path} is not a directory", hint="attach a folder",
                        reason="not-a-directory")
    return folder


def saved(cfg: Config, folder: Path, vm: str) -> Attachment | None:
    return next((a for a in cfg.attachments if a.vm == vm
                 and os.path.realpath(a.host_path) == str(folder)), None)


def of_vm(cfg: Config, vm: str) -> tuple[Attachment, ...]:
    return tuple(a for a in cfg.attachments if a.vm == vm)


def decide(cfg: Config, vm: Vm, folder: Path, *, mode: AttachMode | None = None,
           access: Access | None = None, guest_dst: str | None = None,
           allow_sensitive: bool = False) -> Attachment:
    """The attachment to reconcile for `folder` on `vm`, applying the mode rules (its
    `host_id` is filled by vetting.vet_new; a saved --allow-sensitive is kept)."""
    old = saved(cfg, folder, vm.name)
    if old is not None and mode is not None and mode != old.mode:
        raise mode_mismatch(folder, vm.name, old.mode, mode)
    chosen = mode or (old.mode if old else AttachMode.SHARED_ROOT)
    acc = access or (old.access if old else Access.RW)
    if chosen is AttachMode.GIT and acc is Access.RO:
        raise AivmError("git mode has no read-only access: the guest works on its own clone",
                        hint="the host folder is never exposed in git mode; for a read-only "
                             "view of the folder use --mode shared-root --access ro",
                        reason="git-read-only")
    dst = guest_dst if guest_dst is not None else (old.guest_dst if old else "")
    if dst and not dst.startswith("/"):
        raise AivmError(f"--guest_dst must be an absolute path, not {dst!r}",
                        hint="for example --guest_dst /home/agent/project",
                        reason="relative-guest-dst")
    allow = allow_sensitive or (old.allow_sensitive if old else False)
    return Attachment(str(folder), vm.name, chosen, acc, dst.rstrip("/") or dst,
                      allow_sensitive=allow)


def changed(cfg: Config, att: Attachment) -> bool:
    """Whether `att` differs from (or is missing in) the saved records."""
    return saved(cfg, Path(att.host_path), att.vm) != att


def mode_mismatch(folder: Path, vm: str, old: AttachMode, new: AttachMode) -> AivmError:
    q = shlex.quote(str(folder))
    return AivmError(
        f"{folder} is attached to {vm} in mode {old}; it cannot switch to {new} in place",
        hint=f"detach, then attach again in the new mode:\n"
             f"  aivm detach {q} --vm {vm}\n  aivm attach {q} --vm {vm} --mode {new}",
        reason="mode-mismatch")


def destination(att: Attachment, vm: Vm, host_home: Path | None = None) -> str:
    """Where the folder appears in the guest: --guest_dst, else the mode's default."""
    return att.guest_dst or default_destination(att.mode, Path(att.host_path), vm.user,
                                                host_home or Path.home())


def default_destination(mode: AttachMode, folder: Path, user: str, host_home: Path) -> str:
    if mode is not AttachMode.GIT:
        return str(folder)
    home = Path(os.path.realpath(host_home))
    rel = folder.relative_to(home) if home in folder.parents else Path(folder.name)
    return str(Path("/home") / user / rel)


def slug(folder: Path) -> str:
    """A stable, readable name for the folder: its basename and a digest of its path."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", folder.name)[:24] or "root"
    return f"{base}-{hashlib.sha256(str(folder).encode()).hexdigest()[:10]}"


def tag(folder: Path) -> str:
    """The virtiofs tag of a `shared` folder (virtiofs allows at most 36 bytes)."""
    return f"aivm-{hashlib.sha256(str(folder).encode()).hexdigest()[:16]}"
