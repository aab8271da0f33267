"""Folders that must not be handed to a VM: compared by identity, never by spelling.

virtiofsd runs as root on the host, so whatever a VM gets is readable (and, rw, writable)
with root's power. A folder is refused when it *is*, *contains* or *is inside* a protected
place, with places and the folder compared by (device, inode): a bind mount, a second
spelling or a link of `~/.ssh` is `~/.ssh`. "Contains" also looks through mount points
below the folder (a bind of `~` under `/mnt/x` exposes `~/.ssh`).

Protected (docs/security.md, "What each attachment mode exposes"):
- system: `/etc /root /usr /boot /opt /proc /sys /dev /run`, the library and binary dirs,
  `/var/lib /var/log /var/cache /var/spool /var/mail /var/backups /var/opt`, `/nix`;
- containers, refused only when attached whole or as a parent: `/`, `/home`, `/var`,
  `/var/tmp`, `/tmp`, `/srv`, `/mnt`, `/media` and every home below;
- in each home (the invoking user's, `SUDO_USER`'s, every account's when run as root):
  every hidden entry (`.ssh .gnupg .aws .config .local .cargo .azure .kube .docker
  .password-store .netrc` and the rest) is protected, the home itself is a container;
- aivm's own config dir, store, state dirs and its installation (package and Python).

`--allow-sensitive` (never `--yes`) overrides, with a warning naming what is exposed.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aivm import paths
from aivm.errors import AivmError

Identity = tuple[int, int]

SYSTEM = ("/etc", "/root", "/usr", "/boot", "/opt", "/proc", "/sys", "/dev", "/run", "/bin",
          "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/nix", "/snap", "/var/lib",
          "/var/log", "/var/cache", "/var/spool", "/var/mail", "/var/backups", "/var/opt")
CONTAINERS = ("/", "/home", "/var", "/var/tmp", "/tmp", "/srv", "/mnt", "/media")
# Named even when absent from a listing (an unreadable home): the usual credential stores.
HOME_SECRETS = (".ssh", ".gnupg", ".aws", ".azure", ".kube", ".docker", ".config",
                ".local", ".cargo", ".password-store", ".netrc", ".git-credentials")
OVERRIDE = "--allow-sensitive"


@dataclass(frozen=True)
class Place:
    path: Path
    inside_ok: bool = False     # a container: folders inside it are fine, itself is not


@dataclass(frozen=True)
class Context:
    """Where to look: the homes to protect and aivm's own directories."""
    homes: tuple[Path, ...]
    aivm_dirs: tuple[Path, ...]
    config: tuple[Path, ...] = ()   # the config file (protected) and its folder (a container)
    mountinfo: Path = field(default=Path("/proc/self/mountinfo"))


def context(*, config: Path | None = None, store: Path | None = None,
            home: Path | None = None) -> Context:
    """The protected places of this invocation: `home` (default: $HOME), `SUDO_USER`'s
    home, every account's home when run as root; aivm's config, store and state dirs."""
    homes = [home or Path.home(), *_sudo_home()]
    if os.geteuid() == 0:
        homes += _account_homes()
    dirs = (paths.config_path().parent, store or paths.store_root(), paths.state_root(),
            paths.user_state_dir(), Path(__file__).parents[1], Path(sys.prefix))
    cfg = config or paths.config_path()
    return Context(tuple(dict.fromkeys(homes)), tuple(dict.fromkeys(dirs)),
                   (cfg, cfg.parent))


def _sudo_home() -> list[Path]:
    name = os.environ.get("SUDO_USER", "")
    try:
        return [Path(pwd.getpwnam(name).pw_dir)] if name else []
    except KeyError:
        return []


def _account_homes() -> list[Path]:
    return [Path(p.pw_dir) for p in pwd.getpwall() if p.pw_dir not in ("", "/")]


def places(ctx: Context) -> tuple[Place, ...]:
    out = [Place(Path(p)) for p in SYSTEM] + [Place(Path(p), True) for p in CONTAINERS]
    for home in ctx.homes:
        out.append(Place(home, True))
        out += [Place(home / name) for name in _hidden(home)]
    out += [Place(d) for d in ctx.aivm_dirs]
    out += [Place(p, inside_ok=i > 0) for i, p in enumerate(ctx.config)]
    return tuple(dict.fromkeys(out))


def _hidden(home: Path) -> list[str]:
    try:
        listed = [e.name for e in os.scandir(home) if e.name.startswith(".")]
    except OSError:
        listed = []
    return sorted(set(listed) | set(HOME_SECRETS))


def exposed(folder: Path, ctx: Context) -> tuple[Path, ...]:
    """The protected places `folder` would expose: it is one, contains one (mount points
    below it included), or lies inside one that is not a container. By identity."""
    ids = _Ids()
    here = _real(folder)
    chain = [ids.of(p) for p in (here, *here.parents)]
    if chain[0] is None:
        raise AivmError(f"cannot inspect {folder}: it is not a readable directory",
                        hint="attach a folder that exists and that you can list",
                        reason="unreadable-folder")
    roots = {chain[0], *(ids.of(m) for m in _mounts_below(here, ctx.mountinfo))}
    hits = []
    for place in places(ctx):
        own = ids.of(place.path)
        if own is None:
            continue
        real = _real(place.path)
        if own == chain[0] or (not place.inside_ok and own in chain[1:]) or \
                roots & {ids.of(p) for p in (real, *real.parents)}:
            hits.append(place.path)
    return tuple(dict.fromkeys(hits))


def check(folder: Path, ctx: Context, *, allow: bool) -> str | None:
    """Raise `sensitive-path` for a sensitive folder; with `allow`, the warning to print."""
    hits = exposed(folder, ctx)
    if not hits:
        return None
    names = ", ".join(str(p) for p in hits[:6]) + (f" and {len(hits) - 6} more"
                                                   if len(hits) > 6 else "")
    if not allow:
        raise AivmError(f"refusing to attach {folder}: it exposes {names} to the VM "
                        "(virtiofsd runs as root on the host)",
                        hint=f"attach a project folder instead; pass {OVERRIDE} only if the "
                             "VM really must see this (--yes does not override this)",
                        reason="sensitive-path")
    return (f"WARNING: attaching {folder} exposes {names} to the VM; anything running in "
            "the guest can read it, and change it unless it is attached --access ro")


class _Ids:
    """stat results by path, for one check (a path is stat-ed once)."""

    def __init__(self) -> None:
        self._seen: dict[Path, Identity | None] = {}

    def of(self, path: Path) -> Identity | None:
        if path not in self._seen:
            self._seen[path] = identity(path)
        return self._seen[path]


def identity(path: Path) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _mounts_below(folder: Path, mountinfo: Path) -> Iterable[Path]:
    from aivm.guest import hostmount

    try:
        text = mountinfo.read_text()
    except OSError:
        return ()
    return [Path(m) for m in hostmount.mounts(text) if folder in Path(m).parents]


def _real(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path.expanduser()))
    except OSError:
        return Path(os.path.abspath(path.expanduser()))
