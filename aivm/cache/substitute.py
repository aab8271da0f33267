"""Substitution (fetch a stale node's entry from a binary cache) and push (upload a closure).

An entry from a cache is committed like a local build (`Store.commit`), but only once its
record's manifest names the key asked for, carries a valid signature by a trusted key over
(key, digest, kind, name, version, inputs), and the files written hash to that digest: a
failure of any of these is an error and nothing is committed. Kinds holding one host's
memory state (`NOT_SHAREABLE`) are never pushed nor substituted; build logs live outside
entries and never travel.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aivm.cache import files
from aivm.cache.backends import NOT_SHAREABLE, Cache, Record, Unreachable, open_cache
from aivm.errors import StoreError
from aivm.graph.digest import entry_digest
from aivm.graph.node import ByteProgress
from aivm.graph.store import Manifest, Store

if TYPE_CHECKING:   # cryptography costs ~17 ms: imported when a record is checked or signed
    from aivm.cache import sign

Notify = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    """The `[store]` cache settings (aivm/config/schema.py StoreSettings)."""

    substituters: tuple[str, ...] = ()
    trusted_keys: tuple[str, ...] = ()
    secret_key_file: str = ""
    push_to: str = ""
    auto_push: bool = False


@dataclass
class Substituter:
    """Asks each cache in turn; remembers unreachable ones for the rest of the run."""

    settings: Settings
    notify: Notify
    _caches: dict[str, Cache] = field(default_factory=dict)
    _down: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # nodes build in threads

    def _cache(self, url: str) -> Cache:
        if url not in self._caches:
            self._caches[url] = open_cache(url)
        return self._caches[url]

    def find(self, key: str, name: str, kind: str) -> tuple[Cache, Record] | None:
        if kind in NOT_SHAREABLE:
            return None
        with self._lock:  # one "unreachable" line per cache, however many nodes ask
            return self._find(key, name)

    def _find(self, key: str, name: str) -> tuple[Cache, Record] | None:
        for url in self.settings.substituters:
            if url in self._down:
                continue
            try:
                record = self._cache(url).lookup(key, name)
            except Unreachable as exc:
                self._down.add(url)
                self.notify(f"substituter {url} unreachable ({exc.message}); building instead")
                continue
            if record is not None:
                return self._cache(url), record
        return None

    def fetch(self, store: Store, key: str, name: str, kind: str,
              progress: ByteProgress | None) -> Path | None:
        """Commit the entry of `key` from the first cache that has it; None on a miss."""
        hit = self.find(key, name, kind)
        if hit is None:
            return None
        cache, record = hit
        _check(record, key, name, kind, self.settings.trusted_keys, cache.url)
        total = sum(i.size for i in record.items if i.type == "file")
        advance = (lambda n: progress.advanced(n, total)) if progress else (lambda n: None)
        path, _ = store.commit(key, name,
                               lambda into: files.materialise(list(record.items), into,
                                                              cache.open_blob, advance),
                               lambda size, secs: record.manifest)
        return path


def _check(record: Record, key: str, name: str, kind: str, trusted: Iterable[str],
           url: str) -> None:
    m = record.manifest
    if (m.key, m.name, m.kind) != (key, name, kind) or not m.digest:
        raise StoreError(f"cache {url} answered for {name} ({key[:12]}) with entry "
                         f"{m.name} ({m.key[:12]}, kind {m.kind}); refused",
                         hint="the cache is damaged or hostile; remove it from "
                              "[store] substituters", reason="cache-mismatch")
    from aivm.cache import sign

    sign.check(m, record.signatures, trusted, source=url)


# push ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pushed:
    entries: tuple[str, ...]   # entry names recorded in the cache
    skipped: tuple[str, ...]   # "<entry>: <why>", kinds in backends.NOT_SHAREABLE
    bytes_sent: int


def closure(store: Store, entries: Iterable[Path]) -> list[Path]:
    """The entries and, recursively, the entries they were built from, inputs first."""
    seen: dict[str, Path] = {}

    def visit(entry: Path) -> None:
        if entry.name in seen:
            return
        manifest = store.manifest(entry)
        for name in sorted(manifest.input_entries.values()):
            dep = store.root / name
            if not (dep / "manifest.json").is_file():
                raise StoreError(f"entry {entry.name} needs {name}, which is not in the store",
                                 hint="run `aivm build` first", reason="closure-incomplete")
            visit(dep)
        seen[entry.name] = entry

    for entry in entries:
        visit(entry)
    return list(seen.values())


def push(store: Store, entries: Iterable[Path], cache: Cache, secret: sign.SecretKey | None,
         advance: Callable[[int], None] = lambda n: None, notify: Notify = lambda s: None
         ) -> Pushed:
    """Upload the closure of `entries` to `cache`: each entry re-hashed first (a changed
    entry is never pushed), its manifest signed with `secret`."""
    done, skipped, sent = [], [], 0
    for entry in closure(store, entries):
        manifest = store.manifest(entry)
        if manifest.kind in NOT_SHAREABLE:
            skipped.append(f"{entry.name}: {NOT_SHAREABLE[manifest.kind]}")
            continue
        manifest = _checked(entry, manifest)
        from aivm.cache import sign

        sigs = (sign.sign(manifest, secret),) if secret else ()
        sent += cache.upload(entry, Record(manifest, sigs, tuple(files.items(entry))), advance)
        done.append(entry.name)
        notify(f"pushed {entry.name}")
    return Pushed(tuple(done), tuple(skipped), sent)


def _checked(entry: Path, manifest: Manifest) -> Manifest:
    found = entry_digest(entry)
    if manifest.digest and manifest.digest != found:
        raise StoreError(f"entry {entry.name} changed on disk since it was committed",
                         hint="run `aivm store verify --repair`", reason="digest-mismatch")
    return dataclasses.replace(manifest, digest=found)  # an older entry gets its digest
