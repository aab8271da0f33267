"""The `App` object every command receives in `ctx.obj` (hatch's pattern).

It holds the global options and builds the core objects lazily, so a command
pays only for what it uses. Tests inject a graph factory and a registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aivm import paths

if TYPE_CHECKING:
    from aivm.config.schema import Config
    from aivm.graph.graph import Graph
    from aivm.graph.node import Registry
    from aivm.graph.statcache import StatCache
    from aivm.graph.store import Store


def _default_registry() -> Registry:
    from aivm.recipes import REGISTRY

    return REGISTRY


def _default_graph(app: App, vms: tuple[str, ...]) -> Graph:
    from aivm import model

    return model.declared_graph(app, vms)


def _note(text: str) -> None:
    import click

    click.echo(text, err=True)


def _release_on_close(store: Store) -> None:
    """A build's pending roots (`Store.hold`) last as long as the command, not longer."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.find_root().call_on_close(store.release)


@dataclass
class App:
    config_override: str | None = None
    store_override: str | None = None
    connect: str = ""
    debug: bool = False
    verbose: int = 0
    yes: bool = False
    dry_run: bool = False  # set by --dry-run: nothing may be written or started (aivm/model.py)
    notify: Callable[[str], None] = _note  # one line (or block) for the user, on stderr
    registry_factory: Callable[[], Registry] = _default_registry
    graph_factory: Callable[[App, tuple[str, ...]], Graph] = _default_graph
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return paths.config_path(self.config_override)

    @property
    def connect_uri(self) -> str:
        return (self.connect or os.environ.get("AIVM_LIBVIRT_URI")
                or os.environ.get("LIBVIRT_DEFAULT_URI") or "qemu:///system")

    def config(self, *, implicit: bool = False) -> Config:
        """The loaded config; with `implicit`, create a default one when there is none."""
        if "config" not in self._cache:
            from aivm import model

            self._cache["config"] = model.config_for(self, implicit=implicit, notify=self.notify)
        cfg: Config = self._cache["config"]
        return cfg

    def forget_config(self) -> None:
        self._cache.pop("config", None)

    def store(self) -> Store:
        if "store" not in self._cache:
            from aivm.graph.store import Store

            configured = ""
            if self.store_override is None and not os.environ.get("AIVM_STORE"):
                configured = self._configured_store_root()
            self._cache["store"] = Store(paths.store_root(self.store_override, configured),
                                         holds=not self.dry_run)
            _release_on_close(self._cache["store"])
        store: Store = self._cache["store"]
        return store

    def _configured_store_root(self) -> str:
        """`[store].root` of the config; "" when there is no config file. A config that
        does not load is an error: guessing the default store could collect the wrong one."""
        from aivm.errors import ConfigError

        try:
            return self.config().store.root
        except ConfigError as exc:
            if exc.reason != "no-config":
                raise
            return ""

    def statcache(self) -> StatCache:
        from aivm import model

        return model.statcache_for(self, self.store().root / "cache" / "stat.json")

    def registry(self) -> Registry:
        return self.registry_factory()

    def graph(self, vms: tuple[str, ...] = ()) -> Graph:
        return self.graph_factory(self, vms)
