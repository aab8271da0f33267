"""Garbage collection: mark from the roots through manifests' inputs, sweep the rest.

Runs under the store's exclusive lock, so no build is half-way through;
every `.tmp-*` directory and every entry without a manifest is then garbage.
Roots are the VMs' and explicit roots plus the pending roots of running aivm
processes (`Store.hold`). A root names its entry by identity (device and inode
of the directory it points at), so a store reached through another spelling
keeps what its roots name. A collection that follows a preview removes only what
the preview showed and is still dead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aivm.fsutil import identity
from aivm.graph.store import MANIFEST, Root, Store, remove_tree, tree_size


@dataclass(frozen=True)
class GcResult:
    live: tuple[Path, ...]
    dead: tuple[Path, ...]
    dead_bytes: int
    removed: bool
    dangling_roots: tuple[str, ...]
    kept: tuple[Path, ...] = ()  # shown by the preview, but live (or gone) by now


def live_set(store: Store) -> tuple[set[Path], list[Root]]:
    """Committed entries reachable from a root or a pending root, and the roots that name
    no committed entry of this store."""
    committed = {identity(e): e for e in store.entries() if (e / MANIFEST).is_file()}
    todo: list[Path] = []
    dangling: list[Root] = []
    for root, link in store.root_links().items():
        entry = committed.get(identity(link))
        if entry is None:
            dangling.append(root)
        else:
            todo.append(entry)
    held, _stale = store.pending()
    todo += [store.root / name for name in sorted(held)]
    live: set[Path] = set()
    while todo:
        entry = todo.pop()
        if entry in live or not (entry / MANIFEST).is_file():
            continue
        live.add(entry)
        todo += [store.root / dirname for dirname in store.manifest(entry).input_entries.values()]
    return live, dangling


def collect(store: Store, *, dry_run: bool, shown: GcResult | None = None) -> GcResult:
    """Find (and unless `dry_run`, remove) what no root reaches. With `shown` (a preview),
    remove only what it listed and is still dead now, under this lock."""
    store.ensure()
    with store.lock(exclusive=True, wait=False):
        live, dangling = live_set(store)
        dead = [e for e in store.entries() if e not in live] + store.temporaries()
        kept: list[Path] = []
        if shown is not None:
            now = {p.name for p in dead}
            kept = [p for p in shown.dead if p.name not in now]
            listed = {p.name for p in shown.dead}
            dead = [p for p in dead if p.name in listed]
            dangling = [r for r in dangling if str(r) in shown.dangling_roots]
        size = sum(tree_size(p) for p in dead)
        if not dry_run:
            _sweep(store, dead, dangling)
    return GcResult(tuple(sorted(live)), tuple(dead), size, not dry_run,
                    tuple(str(r) for r in dangling), tuple(kept))


def _sweep(store: Store, dead: list[Path], dangling: list[Root]) -> None:
    for path in dead:
        remove_tree(path)
    for root in dangling:
        store.remove_root(root)
    for path in store.pending()[1]:  # pending roots of processes that are gone
        path.unlink(missing_ok=True)
