"""Node keys: blake3 over canonical JSON, under a context string that names the scheme.

Changing what goes into a key is a deliberate act: bump KEY_SCHEME and the
golden-key tests (tests/graph/test_keys.py) show every key that moved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import blake3

from aivm.graph.node import Node

KEY_SCHEME = 1
KEY_CONTEXT = f"aivm 2026-11-27 node key scheme v{KEY_SCHEME}"
FIXED_CONTEXT = f"aivm 2026-11-27 fixed-output key scheme v{KEY_SCHEME}"


def canonical(value: Any) -> Any:
    """A JSON-ready copy with a single spelling for equal values.

    Mappings are sorted by key; sets and frozensets become sorted lists (they
    are unordered, so their order must not matter); tuples become lists; paths
    become strings.
    """
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, set | frozenset):
        items = [canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"param value {value!r} of type {type(value).__name__} is not JSON-able")


def canonical_json(value: Any) -> bytes:
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def key_params(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Params as they enter the key: a param equal to its default is left out,
    so adding a new option at its default keeps every old key."""
    return {k: v for k, v in params.items()
            if k not in defaults or canonical(defaults[k]) != canonical(v)}


def material(node: Node, *, version: int, defaults: Mapping[str, Any],
             input_keys: Mapping[str, str], template_digests: Mapping[str, str],
             file_digests: Mapping[str, str]) -> dict[str, Any]:
    """Everything a node's output depends on, as a JSON-able dict."""
    if node.fixed_output:
        return {"fixed_output": node.fixed_output}
    return {
        "kind": node.kind,
        "version": version,
        "params": canonical(key_params(node.params, defaults)),
        "inputs": dict(sorted(input_keys.items())),
        "templates": dict(sorted(template_digests.items())),
        "files": dict(sorted(file_digests.items())),
    }


def derive(mat: Mapping[str, Any]) -> str:
    context = FIXED_CONTEXT if "fixed_output" in mat else KEY_CONTEXT
    return blake3.blake3(canonical_json(mat), derive_key_context=context).hexdigest()


def file_digest(path: Path) -> str:
    """blake3 of a file's bytes, memory-mapped and multithreaded for big images."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(path)
    return hasher.hexdigest()


def bytes_digest(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()
