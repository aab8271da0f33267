"""Build real recipe nodes into a real store; shared with the end-to-end harness.

`build_nodes` runs the real scheduler with the real registry. `build_debootstrap_image`
builds the small Debian guest (about a minute, root and mmdebstrap needed) and
returns its store entry: `disk.qcow2`, `vmlinuz`, `initrd.img`, `boot.json`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from aivm.graph import scheduler
from aivm.graph.graph import Graph
from aivm.graph.node import BuildContext, Node
from aivm.graph.statcache import StatCache
from aivm.graph.store import Store
from aivm.recipes import REGISTRY

FAKE_KEY = "0123456789abcdef" * 4


def store_at(root: Path) -> Store:
    return Store(root).ensure()


def build_nodes(store: Store, nodes: Iterable[Node],
                targets: Iterable[str] | None = None) -> scheduler.BuildReport:
    statcache = StatCache(store.root / "cache" / "stat.json")
    return scheduler.build(Graph(nodes), REGISTRY, store, statcache, targets=targets, jobs=2)


def keys_of(nodes: Mapping[str, Node], store: Store) -> dict[str, str]:
    """The key of every node, as the scheduler computes it (nothing is built)."""
    statcache = StatCache(None)
    states = scheduler.resolve(Graph(nodes.values()), REGISTRY, store, statcache)
    return {name: s.key for name, s in states.items()}


def host_mirror(default: str = "http://deb.debian.org/debian") -> str:
    """The Debian mirror this host's apt uses (a test-side choice, never a recipe's)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            uri = match.group(1)
            if "security" not in uri and uri.startswith(("http://", "https://")):
                return uri
    return default


def debootstrap_node(mirror: str | None = None, name: str = "image.debian") -> Node:
    return Node(name, "debootstrap", params={"mirror": mirror or host_mirror()})


def build_debootstrap_image(store_root: Path, mirror: str | None = None) -> Path:
    """Build (or reuse) the debootstrap base image in the store at `store_root`."""
    store = store_at(store_root)
    node = debootstrap_node(mirror)
    report = build_nodes(store, [node])
    return report.states[node.name].path


def render_node(node: Node, into: Path, *, inputs: Mapping[str, Path] | None = None,
                files: Mapping[str, Path] | None = None, key: str = FAKE_KEY) -> Path:
    """Run one recipe's build directly (no store), with a fixed key."""
    into.mkdir(parents=True, exist_ok=True)
    recipe = REGISTRY.recipe(node.kind)
    recipe.preflight(node)
    recipe.build(BuildContext(node, key, dict(inputs or {}), dict(files or {})), into)
    return into
