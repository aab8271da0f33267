"""Garbage collection: mark from the roots through manifests' inputs, sweep the rest.

Runs under the store's exclusive lock, so no build is half-way through;
every `.tmp-*` directory and every entry without a manifest is then garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aivm.graph.store import MANIFEST, Store, remove_tree, tree_size


@dataclass(frozen=True)
class GcResult:
    live: tuple[Path, ...]
    dead: tuple[Path, ...]
    dead_bytes: int
    removed: bool
    dangling_roots: tuple[str, ...]


def live_set(store: Store) -> tuple[set[Path], list[str]]:
    """Entries reachable from a root, and root names that point at nothing."""
    live: set[Path] = set()
    dangling: list[str] = []
    todo: list[Path] = []
    for name, target in store.roots().items():
        if (target / MANIFEST).is_file():
            todo.append(target)
        else:
            dangling.append(name)
    while todo:
        entry = todo.pop()
        if entry in live:
            continue
        live.add(entry)
        for dirname in store.manifest(entry).input_entries.values():
            dep = store.root / dirname
            if (dep / MANIFEST).is_file():
                todo.append(dep)
    return live, dangling


def collect(store: Store, *, dry_run: bool) -> GcResult:
    store.ensure()
    with store.lock(exclusive=True, wait=False):
        live, dangling = live_set(store)
        dead = [e for e in store.entries() if e not in live] + store.temporaries()
        size = sum(tree_size(p) for p in dead)
        if not dry_run:
            for path in dead:
                remove_tree(path)
            for name in dangling:
                store.remove_root(name)
    return GcResult(tuple(sorted(live)), tuple(dead), size, not dry_run, tuple(dangling))
