"""Why a node is stale, in words: the last manifest of the same name against now."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aivm.graph.store import Manifest


def reasons(last: Manifest | None, mat: Mapping[str, Any], *, name: str) -> tuple[str, ...]:
    """Human reasons a node with material `mat` is not in the store."""
    if last is None:
        return ("never built",)
    if "fixed_output" in mat:
        return (f"pinned digest {mat['fixed_output'][:12]}… not in the store",)
    out: list[str] = []
    if last.kind != mat["kind"] or last.version != mat["version"]:
        out.append(f"recipe {last.kind} v{last.version} → {mat['kind']} v{mat['version']}")
    out += _diff("param", last.params, mat["params"])
    out += [f"input {role} changed" for role in _changed(last.inputs, mat["inputs"])]
    out += [f"template {t} changed" for t in _changed(last.templates, mat["templates"])]
    out += [f"file {f} changed" for f in _changed(last.files, mat["files"])]
    return tuple(out) or ("missing from the store (removed by gc?)",)


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _diff(label: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    for k in _changed(old, new):
        if k not in old:
            out.append(f"{label} {k} set to {_show(new[k])}")
        elif k not in new:
            out.append(f"{label} {k} back to its default (was {_show(old[k])})")
        else:
            out.append(f"{label} {k} {_show(old[k])} → {_show(new[k])}")
    return out


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."
