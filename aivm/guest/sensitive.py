"""Folders that must not be handed to a VM without a loud, explicit yes.

Attaching a folder extends trust to whatever runs in the guest. The home
directory itself, credential stores under it, `/root`, `/etc`, and any parent
of those (`/`, `/home`) are refused unless the user passes `--yes`; even then
a warning names what is exposed.
"""

from __future__ import annotations

import os
from pathlib import Path

from aivm.errors import AivmError

HOME_SECRETS = (".ssh", ".gnupg", ".aws", ".kube", ".docker", ".config/gh", ".password-store")
SYSTEM = ("/root", "/etc")


def protected(home: Path) -> tuple[Path, ...]:
    """The sensitive locations for a user whose home is `home` (home itself first)."""
    return (home, *(home / p for p in HOME_SECRETS), *(Path(p) for p in SYSTEM))


def exposed(folder: Path, home: Path) -> tuple[Path, ...]:
    """The sensitive locations `folder` would expose: itself or a parent of one, or a folder
    inside a credential store, /root or /etc (inside the home is fine: projects live there)."""
    here = _real(folder)
    places = [_real(p) for p in protected(_real(home))]
    out = [p for p in places if here == p or (here in p.parents and (p == places[0]
                                                                     or os.path.lexists(p)))]
    out += [p for p in places[1:] if p in here.parents]
    return tuple(dict.fromkeys(out))


def check(folder: Path, home: Path, *, yes: bool) -> str | None:
    """Raise `sensitive-path` for a sensitive folder; with `yes`, return the warning to print."""
    hits = exposed(folder, home)
    if not hits:
        return None
    names = ", ".join(str(p) for p in hits)
    if not yes:
        raise AivmError(f"refusing to attach {folder}: it exposes {names} to the VM",
                        hint="attach a project folder instead; pass --yes only if the VM "
                             "really must see this", reason="sensitive-path")
    return (f"WARNING: attaching {folder} exposes {names} to the VM; anything running in "
            "the guest can read it, and change it unless it is attached --access ro")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))
