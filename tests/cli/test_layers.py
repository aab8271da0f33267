"""The core stays below the CLI: no module of the core imports click or aivm.cli.

The core is every module but aivm/cli/ and aivm/__main__.py (guest, activate, graph,
config, cache, ... and aivm/session.py, the facade). Imports are read with `ast` (also
those under `if TYPE_CHECKING:` and inside functions), so a lazy import counts as much
as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aivm

ROOT = Path(aivm.__file__).parent
NAMED = ("guest", "activate", "graph", "config", "cache", "session.py")
FRONT_END = ("cli", "__main__.py")
FORBIDDEN = ("click", "aivm.cli")


def imported(path: Path) -> set[str]:
    """Every module `path` imports, by its full dotted name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def forbidden(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN))


def core_files() -> list[Path]:
    return [f for f in sorted(ROOT.rglob("*.py"))
            if f.relative_to(ROOT).parts[0] not in FRONT_END]


def test_the_core_imports_neither_click_nor_the_cli() -> None:
    bad = {str(f.relative_to(ROOT)): forbidden(imported(f)) for f in core_files()}
    assert {f: names for f, names in bad.items() if names} == {}


def test_the_scan_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The check can fail: a lazy, a TYPE_CHECKING and a from-import are all seen."""
    sample = tmp_path / "m.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from aivm.cli.session import Session\n"
                      "def f():\n    import click\n    from aivm import cli\n")
    assert forbidden(imported(sample)) == ["aivm.cli", "aivm.cli.session",
                                           "aivm.cli.session.Session", "click"]
    tops = {f.relative_to(ROOT).parts[0] for f in core_files()}
    assert set(NAMED) <= tops and not tops & set(FRONT_END)
