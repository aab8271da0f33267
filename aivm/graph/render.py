"""The graph as text, DOT, Mermaid or JSON, each node with its state.

States: `cached` (its key is in the store), `stale` (to build, with reasons),
`waiting` (stale, and at least one of its inputs is stale too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aivm.graph.graph import Graph
from aivm.graph.scheduler import NodeState


def state_of(graph: Graph, states: Mapping[str, NodeState], name: str) -> str:
    s = states[name]
    if s.cached:
        return "cached"
    deps = graph.nodes[name].inputs.values()
    return "waiting" if any(not states[d].cached for d in deps) else "stale"


def _label(graph: Graph, states: Mapping[str, NodeState], name: str) -> str:
    s = states[name]
    state = state_of(graph, states, name)
    why = f": {'; '.join(s.reasons)}" if s.reasons and state != "cached" else ""
    return f"{name} [{s.kind}] {state} {s.key[:12]}{why}"


def text(graph: Graph, states: Mapping[str, NodeState]) -> str:
    """A tree per top node (one no other node depends on), inputs below it."""
    used = {d for n in states for d in graph.nodes[n].inputs.values()}
    tops = sorted(n for n in states if n not in used)
    lines: list[str] = []
    for top in tops:
        lines.append(_label(graph, states, top))
        _children(graph, states, top, "", lines)
    return "\n".join(lines)


def _children(graph: Graph, states: Mapping[str, NodeState], name: str, indent: str,
              lines: list[str]) -> None:
    deps = sorted(graph.nodes[name].inputs.items())
    for i, (role, dep) in enumerate(deps):
        last = i == len(deps) - 1
        lines.append(f"{indent}{'└── ' if last else '├── '}{role}: {_label(graph, states, dep)}")
        _children(graph, states, dep, indent + ("    " if last else "│   "), lines)


def dot(graph: Graph, states: Mapping[str, NodeState]) -> str:
    colour = {"cached": "palegreen", "stale": "gold", "waiting": "lightgrey"}
    out = ["digraph aivm {", "  rankdir=LR;", "  node [shape=box, style=filled];"]
    for name in sorted(states):
        st = state_of(graph, states, name)
        label = f"{name}\\n{states[name].kind} ({st})"
        out.append(f'  "{name}" [label="{label}", fillcolor={colour[st]}];')
    for name in sorted(states):
        for role, dep in sorted(graph.nodes[name].inputs.items()):
            out.append(f'  "{dep}" -> "{name}" [label="{role}"];')
    out.append("}")
    return "\n".join(out)


def mermaid(graph: Graph, states: Mapping[str, NodeState]) -> str:
    ids = {name: f"n{i}" for i, name in enumerate(sorted(states))}
    out = ["flowchart LR"]
    for name, nid in ids.items():
        out.append(f'  {nid}["{name}<br/>{states[name].kind} ({state_of(graph, states, name)})"]')
    for name in sorted(states):
        for role, dep in sorted(graph.nodes[name].inputs.items()):
            out.append(f"  {ids[dep]} -->|{role}| {ids[name]}")
    return "\n".join(out)


def as_json(graph: Graph, states: Mapping[str, NodeState]) -> str:
    data: dict[str, Any] = {"nodes": [
        {"name": n, "kind": s.kind, "key": s.key, "path": str(s.path),
         "state": state_of(graph, states, n), "reasons": list(s.reasons),
         "inputs": dict(sorted(graph.nodes[n].inputs.items()))}
        for n, s in sorted(states.items())]}
    return json.dumps(data, indent=2)


FORMATS = {"text": text, "dot": dot, "mermaid": mermaid, "json": as_json}
