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

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aivm.fsutil import identity, is_locked
from aivm.graph.store import MANIFEST, Manifest, Root, Store, remove_tree, tree_size


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


def collect(store: Store, *, dry_run: bool, shown: GcResult | None = None,
            max_freed: int | None = None, older_than: float | None = None) -> GcResult:
    """Find (and unless `dry_run`, remove) what no root reaches. With `shown` (a preview),
    remove only what it listed and is still dead now, under this lock. `older_than`
    (seconds): only dead entries created that long ago; `max_freed` (bytes): the oldest
    dead entries first, stopping once that much is freed."""
    store.ensure()
    with store.lock(exclusive=True, wait=False):
        live, dangling = live_set(store)
        dead = [e for e in store.entries() if e not in live] + store.temporaries()
        if shown is None:  # a collection after a preview removes what the preview chose
            dead = _limited(dead, max_freed, older_than)
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


def _limited(dead: list[Path], max_freed: int | None, older_than: float | None) -> list[Path]:
    if max_freed is None and older_than is None:
        return dead
    now = time.time()
    aged = sorted(((_created(p), p) for p in dead), key=lambda t: (t[0], t[1].name))
    if older_than is not None:
        aged = [(t, p) for t, p in aged if now - t >= older_than]
    out: list[Path] = []
    freed = 0
    for _t, path in aged:
        if max_freed is not None and freed >= max_freed:
            break
        out.append(path)
        freed += tree_size(path)
    return sorted(out)


def _created(path: Path) -> float:
    """When an entry was committed (its manifest's date); a temp's or broken entry's mtime."""
    try:
        return datetime.fromisoformat(Manifest.from_json((path / MANIFEST).read_text())
                                      .created).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return path.lstat().st_mtime
        except OSError:
            return time.time()


@dataclass(frozen=True)
class RootInfo:
    """One gc root and what holds it."""

    kind: str      # "vm" | "explicit" | "pending"
    link: str      # its file under <store>/roots/
    holder: str    # the VM, the explicit name, or "pid <n>"
    entries: tuple[str, ...]
    dangling: bool = False

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "link": self.link, "holder": self.holder,
                "entries": list(self.entries), "dangling": self.dangling}


def roots(store: Store) -> list[RootInfo]:
    """Every root: VMs' and explicit links, and the pending roots of live aivm processes."""
    out = []
    top = store.root / "roots"
    for root, link in sorted(store.root_links().items()):
        target = store.entry_of(Path(os.path.normpath(link.parent / os.readlink(link))))
        ok = target is not None and (target / MANIFEST).is_file()
        name = target.name if target is not None else os.readlink(link)
        out.append(RootInfo("vm" if root.vm else "explicit", str(link.relative_to(top)),
                            root.vm or root.name, (name,), not ok))
    folder = top / "pending"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        if not is_locked(path):
            continue
        try:
            held = tuple(sorted(str(n) for n in json.loads(path.read_text())))
        except (OSError, ValueError):
            held = ()
        out.append(RootInfo("pending", str(path.relative_to(top)),
                            f"pid {path.name.split('-')[0]}", held))
    return out
