"""From the declared config to the graph: the glue between config/ and graph/."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aivm.errors import ConfigError

if TYPE_CHECKING:
    from aivm.cli.app import App
    from aivm.config.schema import Config
    from aivm.graph.graph import Graph


def load_config(path: Path, *, implicit: bool) -> Config:
    """Load the config; with `implicit`, write the defaults first when there is none."""
    from aivm.config import load

    try:
        return load.load(path)
    except ConfigError as exc:
        if not implicit or exc.reason != "no-config":
            raise
    from aivm.config import init

    init.implicit_init(path)
    return load.load(path)


def declared_graph(app: App, vms: tuple[str, ...]) -> Graph:
    """The graph of the named VMs (every declared VM when none are named)."""
    from aivm.activate import accel as accel_probe
    from aivm.config.to_graph import vm_graph
    from aivm.graph.graph import merge

    cfg = app.config(implicit=True)
    from aivm.config.resolve import with_host_ids

    chosen = [with_host_ids(_vm(cfg, name)) for name in vms] if vms else [
        with_host_ids(vm) for vm in cfg.vms]
    return merge(vm_graph(cfg, vm, accel=accel_probe.choose(vm.accel).accel.value) for vm in chosen)


def _vm(cfg: Config, name: str):  # type: ignore[no-untyped-def]
    vm = cfg.vm(name)
    if vm is None:
        names = ", ".join(v.name for v in cfg.vms) or "none"
        raise ConfigError(f"no VM named {name!r} (declared: {names})",
                          hint="`aivm config show` lists the VMs", reason="unknown-vm")
    return vm
