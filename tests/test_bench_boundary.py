"""bench/ uses the test harness only through its public names (issue: peers imported privates)."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _private_uses(tree: ast.AST, harness_aliases: set[str]) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests"):
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if a.name.startswith("_")]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in harness_aliases and node.attr.startswith("_")):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def _aliases(tree: ast.AST) -> set[str]:
    """Names bound to modules of tests/ (`from tests.e2e import harness as h`, `import tests.x`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests"):
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.asname or a.name for a in node.names if a.name.startswith("tests")}
    return names


def test_bench_uses_no_private_name_of_the_tests() -> None:
    files = sorted(BENCH.rglob("*.py"))
    assert files, "bench/ has no Python files"
    bad = {}
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        if uses := _private_uses(tree, _aliases(tree)):
            bad[path.name] = uses
    assert bad == {}
