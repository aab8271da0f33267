"""Where things live: the config file, the store, per-VM state.

Precedence for the store root: `--store`, then `AIVM_STORE`, then `[store].root`
in the config, then `store/` of the checkout when running from a source tree,
else `/var/lib/aivm/store` for root and `~/.local/share/aivm/store` otherwise.
Per-VM mutable state (writable disks, console logs, shared-root exports) lives
under `AIVM_STATE` or `/var/lib/libvirt/aivm/<vm>/`, never in the store.
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def config_path(override: str | os.PathLike[str] | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get("AIVM_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aivm" / "config.toml"


def store_root(override: str | os.PathLike[str] | None = None, configured: str = "") -> Path:
    for candidate in (override, os.environ.get("AIVM_STORE"), configured):
        if candidate:
            return Path(candidate).expanduser().absolute()
    if (CHECKOUT / "store" / "README.md").is_file() and (CHECKOUT / "pyproject.toml").is_file():
        return CHECKOUT / "store"
    if os.geteuid() == 0:
        return Path("/var/lib/aivm/store")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aivm" / "store"


def state_root() -> Path:
    return Path(os.environ.get("AIVM_STATE") or "/var/lib/libvirt/aivm")


def vm_state_dir(vm: str) -> Path:
    return state_root() / vm


def user_state_dir() -> Path:
    """Unprivileged per-user state: ssh config, known_hosts, recorded IPs."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "aivm"
