"""A set of nodes wired by their inputs.

Ordering uses the standard library's graphlib, which is cheap to import, so
a no-op build stays fast; networkx is imported only when the graph is
analysed (`nx()`: rendering, reachability) as DVC does.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from aivm.errors import GraphError
from aivm.graph.node import Node

if TYPE_CHECKING:
    import networkx


class Graph:
    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes: dict[str, Node] = {}
        for node in nodes:
            self.add(node)

    def add(self, node: Node) -> None:
        known = self.nodes.get(node.name)
        if known is not None and known != node:
            raise GraphError(f"two different nodes are both named {node.name!r}",
                             hint="node names must be unique in a graph", reason="duplicate-node")
        self.nodes[node.name] = node

    def __contains__(self, name: str) -> bool:
        return name in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def order(self, names: Iterable[str] | None = None) -> list[str]:
        """Names in dependency order (inputs first); a cycle is a GraphError naming it."""
        wanted = self.closure(names)
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for name in sorted(wanted):
            sorter.add(name, *sorted(self.nodes[name].inputs.values()))
        try:
            return list(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = exc.args[1]
            raise GraphError("the graph has a cycle: " + " -> ".join(cycle),
                             hint="a node cannot depend on itself, directly or through others",
                             reason="cycle") from None

    def closure(self, names: Iterable[str] | None) -> set[str]:
        """The named nodes and everything they depend on."""
        seen: set[str] = set()
        todo = list(self.nodes if names is None else names)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            node = self.nodes.get(name)
            if node is None:
                raise GraphError(f"no node named {name!r}",
                                 hint="`aivm graph` lists the nodes", reason="unknown-node")
            seen.add(name)
            for dep in node.inputs.values():
                if dep not in self.nodes:
                    raise GraphError(f"node {name!r} needs {dep!r}, which is not in the graph",
                                     hint="a recipe input must name another node",
                                     reason="missing-input")
                todo.append(dep)
        return seen

    def dependants(self, name: str) -> set[str]:
        """Every node that depends on `name`, directly or not."""
        out: set[str] = set()
        frontier = {name}
        while frontier:
            nxt = {n.name for n in self.nodes.values()
                   if n.name not in out and frontier & set(n.inputs.values())}
            out |= nxt
            frontier = nxt
        return out

    def nx(self) -> networkx.DiGraph:
        import networkx

        g = networkx.DiGraph()
        for node in self.nodes.values():
            g.add_node(node.name, kind=node.kind)
            for role, dep in node.inputs.items():
                g.add_edge(dep, node.name, role=role)
        return g


def merge(graphs: Iterable[Mapping[str, Node]]) -> Graph:
    """Union of several node sets; shared nodes (a base image, a network) must agree."""
    g = Graph([])
    for nodes in graphs:
        for node in nodes.values():
            g.add(node)
    return g
