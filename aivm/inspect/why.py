"""`aivm why-depends A B`: the dependency paths from a VM or node to another node.

The graph is the union of the declared graph (each node's current entry and its
inputs) and the store's manifests (every entry and the entries it was built on),
plus a VM's gc roots: so an old image a VM's roots still hold is found too.
networkx is imported here only, never on the build path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aivm.errors import AivmError
from aivm.graph.store import MANIFEST, Store


@dataclass(frozen=True)
class Hop:
    """One vertex of a path: a VM, or an entry (its node name and key prefix)."""

    label: str
    entry: str = ""   # entry directory name; "" for a VM
    via: str = ""     # the input role or root name that leads here

    def __str__(self) -> str:
        key = f" ({self.entry[:12]})" if self.entry else ""
        via = f" [{self.via}]" if self.via else ""
        return f"{self.label}{key}{via}"

    def to_json(self) -> dict[str, str]:
        return {"label": self.label, "entry": self.entry, "via": self.via}


def dependency_graph(store: Store, states: Mapping[str, Any],
                     vm_nodes: Mapping[str, Iterable[str]]) -> Any:
    """A networkx DiGraph: entry -> input entry, "vm:<name>" -> its nodes' and roots' entries.
    `states`: node name -> NodeState (scheduler.resolve); `vm_nodes`: VM -> its node names."""
    import networkx as nx

    g = nx.DiGraph()
    for entry in store.entries():
        if (entry / MANIFEST).is_file():
            m = store.manifest(entry)
            g.add_node(entry.name, label=m.name)
            for role, dep in m.input_entries.items():
                g.add_edge(entry.name, dep, via=role)
    for name, state in states.items():
        g.add_node(state.path.name, label=name)
        for role, dep in state.material.get("inputs", {}).items():
            dep_name = _input_name(states, dep)
            if dep_name:
                g.add_edge(state.path.name, states[dep_name].path.name, via=role)
    for vm, nodes in vm_nodes.items():
        top = f"vm:{vm}"
        g.add_node(top, label=f"VM {vm}")
        mine = [states[n].path.name for n in nodes if n in states]
        for entry in mine:  # the VM's top nodes: no other node of the VM takes them as input
            if not any(g.has_edge(other, entry) for other in mine):
                g.add_edge(top, entry, via=g.nodes[entry]["label"])
        for root, entry in store.vm_roots(vm).items():
            g.add_edge(top, Path(entry).name, via=f"root {root}")
    return g


def _input_name(states: Mapping[str, Any], key: str) -> str:
    return next((n for n, s in states.items() if s.key == key), "")


def paths(g, start: str, goals: Iterable[str], *, every: bool,  # type: ignore[no-untyped-def]
          limit: int = 100) -> list[list[Hop]]:
    """The shortest path from `start` to the nearest goal, or (`every`) all simple paths."""
    import networkx as nx

    found: list[list[str]] = []
    for goal in goals:
        if goal not in g or not nx.has_path(g, start, goal):
            continue
        if every:
            found += list(nx.all_simple_paths(g, start, goal))[:limit]
        else:
            found.append(nx.shortest_path(g, start, goal))
    found.sort(key=lambda p: (len(p), p))
    if not every:
        found = found[:1]
    return [_hops(g, p) for p in found]


def _hops(g, path: list[str]) -> list[Hop]:  # type: ignore[no-untyped-def]
    hops = []
    for i, vertex in enumerate(path):
        via = g.edges[path[i - 1], vertex].get("via", "") if i else ""
        entry = "" if vertex.startswith("vm:") else vertex
        hops.append(Hop(g.nodes[vertex].get("label", vertex), entry, via))
    return hops


def goals_for(g, target: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Vertices `target` names: entries of that node name (any key; an image's name stands
    for its node image.<name>), an entry directory name or a key prefix, or a VM."""
    if f"vm:{target}" in g:
        return [f"vm:{target}"]
    hits = [v for v, data in g.nodes(data=True)
            if data.get("label") in (target, f"image.{target}") or v == target
            or (len(target) >= 8 and v.startswith(target))]
    if not hits:
        raise AivmError(f"{target!r} names no node, entry or VM",
                        hint="name a node (aivm graph), an entry directory or a key prefix",
                        reason="unknown-target")
    return sorted(hits)
