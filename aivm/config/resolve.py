"""Which VM a command means: --vm, the folder's attachment, active_vm, the only VM.

The chosen Vm comes back with uid/gid filled from the host user (the one who
ran sudo, when run through sudo) if host_uid_match is set.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from aivm.config.schema import Config, Vm
from aivm.errors import ConfigError


def resolve_vm(cfg: Config, name: str | None = None, cwd: Path | None = None) -> Vm:
    vm = _by_name(cfg, name) if name else _by_folder(cfg, cwd or Path.cwd())
    if vm is None:
        vm = _by_name(cfg, cfg.active_vm) if cfg.active_vm else _only(cfg)
    return with_host_ids(vm)


def with_host_ids(vm: Vm) -> Vm:
    if not vm.host_uid_match:
        return vm
    uid, gid = host_ids()
    return dataclasses.replace(vm, uid=uid if vm.uid is None else vm.uid,
                               gid=gid if vm.gid is None else vm.gid)


def host_ids() -> tuple[int, int]:
    """The invoking user's uid/gid: SUDO_UID/SUDO_GID when root through sudo."""
    if os.geteuid() == 0 and os.environ.get("SUDO_UID", "").isdigit():
        return int(os.environ["SUDO_UID"]), int(os.environ.get("SUDO_GID", "0") or 0)
    return os.getuid(), os.getgid()


def _choices(cfg: Config) -> str:
    return ", ".join(v.name for v in cfg.vms) or "(none)"


def _by_name(cfg: Config, name: str) -> Vm:
    vm = cfg.vm(name)
    if vm is None:
        raise ConfigError(f"no VM named {name!r} in {cfg.path or 'the config'}",
                          hint=f"choose one of: {_choices(cfg)}", reason="unknown-vm")
    return vm


def _by_folder(cfg: Config, cwd: Path) -> Vm | None:
    """The VM with the deepest attachment containing `cwd`; None when no attachment does."""
    here = _norm(cwd)
    best: dict[str, int] = {}
    for att in cfg.attachments:
        root = _norm(Path(att.host_path))
        if (here == root or root in here.parents) and cfg.vm(att.vm) is not None:
            best[att.vm] = max(best.get(att.vm, -1), len(root.parts))
    if not best:
        return None
    depth = max(best.values())
    names = [n for n, d in best.items() if d == depth]
    if len(names) > 1 and cfg.active_vm in names:
        names = [cfg.active_vm]
    if len(names) > 1:
        raise ConfigError(f"{cwd} is attached to several VMs: {', '.join(names)}",
                          hint="pick one with --vm NAME", reason="ambiguous-vm")
    return cfg.vm(names[0])


def _only(cfg: Config) -> Vm:
    if len(cfg.vms) == 1:
        return cfg.vms[0]
    if not cfg.vms:
        raise ConfigError(f"no VMs are defined in {cfg.path or 'the config'}", reason="no-vm",
                          hint="add a [[vms]] entry, or run `aivm config init`")
    raise ConfigError(f"several VMs are defined and none is chosen: {_choices(cfg)}",
                      hint="pick one with --vm NAME, or set active_vm in the config",
                      reason="ambiguous-vm")


def _norm(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))
