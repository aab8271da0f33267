"""Nodes and the recipe contract.

A *recipe* is a node kind: a name, a version, the templates it renders, its
parameter defaults, a preflight check and `build(ctx, into)`, which writes
files into an empty directory and touches nothing else. A *node* is one use
of a recipe in a graph: a unique name, params, named inputs (other nodes by
name) and local files whose content is part of its key.

A fixed-output node (a fetched file with a pinned sha256) declares
`fixed_output`; its key is derived from that digest alone, never its URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, Path] = field(default_factory=dict)
    fixed_output: str | None = None

    def __hash__(self) -> int:
        return hash(self.name)


class ByteProgress(Protocol):
    """How a recipe reports byte-counting work (a download, a copy): two distinct calls."""

    def advanced(self, nbytes: int, total: int | None) -> None:
        """`nbytes` more bytes are done since the last report (an increment)."""

    def reached(self, position: int, total: int | None) -> None:
        """`position` bytes are done in all, e.g. where a resumed download starts (a position)."""


@dataclass(frozen=True)
class BuildContext:
    """What a recipe may read while building: its node and its inputs' store paths."""

    node: Node
    key: str
    inputs: Mapping[str, Path]
    files: Mapping[str, Path]
    progress: ByteProgress | None = None
    file_digests: Mapping[str, str] = field(default_factory=dict)  # the keyed blake3 per file

    def input(self, role: str) -> Path:
        return self.inputs[role]

    def param(self, name: str, default: Any = None) -> Any:
        return self.node.params.get(name, default)


class Recipe(Protocol):
    """The contract every node kind fulfils (see aivm/recipes for the real ones)."""

    kind: ClassVar[str]
    version: ClassVar[int]
    templates: ClassVar[tuple[str, ...]]
    defaults: ClassVar[Mapping[str, Any]]
    inputs: ClassVar[tuple[str, ...]]

    def preflight(self, node: Node) -> None:
        """Raise AivmError when the node cannot be built here (missing tool, bad param)."""

    def build(self, ctx: BuildContext, into: Path) -> None:
        """Write the node's output files into the empty directory `into`."""


class Registry(Protocol):
    def recipe(self, kind: str) -> Recipe: ...

    def template_path(self, name: str) -> Path: ...
