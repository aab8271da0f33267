"""From the declared config to the graph: the glue between config/ and graph/.

A dry run (`App.dry_run`) writes nothing and starts nothing here: a missing
config is previewed, not written (its text goes to `notify`), the accel is
taken from the cache or from files alone (no QEMU probe), and the stat cache
is read but never saved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aivm.errors import ConfigError
from aivm.graph.statcache import StatCache

if TYPE_CHECKING:
    from aivm.activate.accel import AccelChoice
    from aivm.config.schema import Config, Vm
    from aivm.graph.graph import Graph
    from aivm.host.facts import HostFacts
    from aivm.session import Env as App

# A file that a real run would create before using it (the ssh key of a previewed config):
# in a dry run it is keyed by this placeholder instead of its (absent) content.
NOT_YET_CREATED = "not yet created (dry run)"


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


def config_for(app: App, *, implicit: bool, notify: Callable[[str], None]) -> Config:
    """The app's config; in a dry run a missing one is previewed through `notify`."""
    if not (app.dry_run and implicit):
        return load_config(app.config_path, implicit=implicit)
    from aivm.config import init, load

    try:
        return load.load(app.config_path)
    except ConfigError as exc:
        if exc.reason != "no-config":
            raise
    preview = init.implicit_preview(app.config_path)
    notify(preview.message(app.config_path))
    if preview.new_key is not None:
        app._cache["not_yet_created"] = frozenset({preview.new_key})
    return preview.config


class PreviewStatCache(StatCache):
    """A dry run's stat cache: reads the saved digests, saves nothing, and keys the files
    a real run would create first by a placeholder."""

    def __init__(self, path: Path, not_yet_created: frozenset[Path]) -> None:
        super().__init__(path)
        self.not_yet_created = not_yet_created

    def digest(self, path: Path) -> str:
        if path.absolute() in self.not_yet_created and not path.exists():
            return NOT_YET_CREATED
        return super().digest(path)

    def save(self) -> None:
        pass


def statcache_for(app: App, path: Path) -> StatCache:
    if not app.dry_run:
        return StatCache(path)
    return PreviewStatCache(path, app._cache.get("not_yet_created", frozenset()))


def accel_for(app: App, setting: str) -> AccelChoice:
    """The accel of a VM's domain node, decided once per command; no probe in a dry run."""
    from aivm.activate import accel

    cached = app._cache.setdefault("accel", {})
    if setting not in cached:
        cached[setting] = accel.choose(setting, may_probe=not app.dry_run)
        if cached[setting].note:
            app.notify(cached[setting].note)
    choice: AccelChoice = cached[setting]
    return choice


def declared_graph(app: App, vms: tuple[str, ...]) -> Graph:
    """The graph of the named VMs (every declared VM when none are named)."""
    from aivm.config.resolve import with_host_ids
    from aivm.config.to_graph import vm_graph
    from aivm.graph.graph import merge

    cfg = app.config(implicit=True)
    chosen = [with_host_ids(_vm(cfg, name)) for name in vms] if vms else [
        with_host_ids(vm) for vm in cfg.vms]
    facts = host_facts(app, auto=any(str(vm.accel) == "auto" and not vm.host
                                     for vm in chosen))
    return merge(vm_graph(cfg, vm, _facts_of(vm, facts)) for vm in chosen)


def _facts_of(vm: Vm, local: HostFacts) -> HostFacts:
    """A VM on another host is built with that host's facts (aivm/remote/facts.py)."""
    if not vm.host:
        return local
    from aivm.remote.facts import graph_facts

    return graph_facts(vm.host)


def host_facts(app: App, *, auto: bool) -> HostFacts:
    """This host's facts (read once per process); with `auto`, the accel that
    `accel = "auto"` resolves to as well: from the per-boot cache when the probe ran
    (aivm/activate/accel.py stays unimported), else decided now (no QEMU in a dry run)."""
    from aivm.host import facts

    found = facts.detect()
    if not auto:
        return found
    return found.with_accel(facts.cached_accel() or accel_for(app, "auto").accel.value)


def _vm(cfg: Config, name: str) -> Vm:
    return cfg.require_vm(name)
