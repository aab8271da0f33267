"""Binary caches: where entries go (`push`) and come from (substitution).

A cache holds, per entry key, one *record*: the manifest, its signatures and
the entry's items (aivm/cache/files.py); file contents are blobs addressed by
their digest, so a second entry with the same file uploads nothing new.

- `file:///srv/aivm-cache`: `aivm-cache-version`, `entries/<id>.json`, `blobs/<blake3>`.
- `oci://registry/repo`: one OCI artifact per entry, tagged by its id (aivm/cache/oci.py).
- `ssh://[user@]host[:port]`: another host's store, a copy target (aivm/cache/ssh.py).

An id is the key and a digest of the node name (`record_id`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

import blake3

from aivm import fsutil
from aivm.cache.files import CHUNK, Item
from aivm.errors import StoreError
from aivm.graph.store import Manifest

RECORD_FORMAT = 1
# Kinds never pushed nor substituted: a booted state is one host's memory (its QEMU, its
# CPU). Every other entry is relocatable (a domain XML names store files by reference,
# resolved at activation: aivm/recipes/domain_xml.py), so it is shared.
NOT_SHAREABLE = {"booted-state": "memory state is never shared"}


@dataclass(frozen=True)
class Record:
    manifest: Manifest
    signatures: tuple[str, ...]
    items: tuple[Item, ...] = field(default=())

    def to_json(self) -> str:
        return json.dumps({"format": RECORD_FORMAT, "manifest": json.loads(self.manifest.to_json()),
                           "signatures": list(self.signatures),
                           "items": [i.to_json() for i in self.items]}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"record format {data.get('format')!r}")
        return cls(Manifest.from_json(json.dumps(data["manifest"])),
                   tuple(str(s) for s in data.get("signatures", ())),
                   tuple(Item.from_json(i) for i in data["items"]))


def record_id(key: str, name: str) -> str:
    """What a record is stored under: the key and the node name (keys leave names out, and
    the same key under two names is two entries, which may differ: a qcow2's backing file
    names its input's entry). A digest of the name keeps the id a valid OCI tag."""
    return f"{key}-{blake3.blake3(name.encode()).hexdigest()[:16]}"


class Unreachable(StoreError):
    """The cache cannot be reached or read (not: it lacks the entry)."""


class Cache(Protocol):
    url: str

    def lookup(self, key: str, name: str) -> Record | None:
        """The record of (`key`, `name`); None when the cache lacks it, Unreachable when it
        cannot tell."""

    def open_blob(self, item: Item) -> BinaryIO:
        """A stream of the file content of `item` (fetched lazily, never all in memory)."""

    def upload(self, entry: Path, record: Record, advance: Callable[[int], None]) -> int:
        """Store `record` and the files of `entry` it lists; the bytes actually sent."""


def open_cache(url: str) -> Cache:
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.path:
        return FileCache(url, Path(unquote(parts.path)))
    if parts.scheme == "oci" and parts.netloc and parts.path.strip("/"):
        from aivm.cache.oci import OciCache

        return OciCache(url, parts.netloc, parts.path.strip("/"))
    if parts.scheme == "ssh" and parts.netloc:
        from aivm.cache.ssh import SshStore  # another host's store (issue #17)
        from aivm.remote.address import parse

        return SshStore(url, parse(url))
    raise StoreError(f"cache URL {url!r} is not file:///PATH or oci://REGISTRY/REPOSITORY",
                     hint="e.g. file:///srv/aivm-cache or oci://ghcr.io/team/aivm",
                     reason="cache-url")


class FileCache:
    """A cache in a directory (a mounted share, a USB disk, an rsync target)."""

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root

    def _version(self) -> Path:
        return self.root / "aivm-cache-version"

    def lookup(self, key: str, name: str) -> Record | None:
        if not self._version().is_file():
            raise Unreachable(f"no aivm cache at {self.root}",
                              hint="push to it first (`aivm store push --to URL`)",
                              reason="cache-unreachable")
        path = self.root / "entries" / f"{record_id(key, name)}.json"
        try:
            return Record.from_json(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise Unreachable(f"cannot read {path}: {exc}",
                              hint="check the cache", reason="cache-unreachable") from exc

    def open_blob(self, item: Item) -> BinaryIO:
        return open(self.root / "blobs" / item.blob, "rb")

    def upload(self, entry: Path, record: Record, advance: Callable[[int], None]) -> int:
        try:
            for sub in ("entries", "blobs"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            if not self._version().is_file():
                fsutil.atomic_write(self._version(), f"{RECORD_FORMAT}\n")
            sent = sum(self._put_blob(entry / i.path, i.blob, advance)
                       for i in record.items if i.type == "file")
            fsutil.atomic_write(self.root / "entries" /
                                f"{record_id(record.manifest.key, record.manifest.name)}.json",
                                record.to_json())
        except OSError as exc:
            raise Unreachable(f"cache {self.url}: cannot write: {exc}",
                              hint="check the path and its permissions",
                              reason="cache-unreachable") from exc
        return sent

    def _put_blob(self, src: Path, blob: str, advance: Callable[[int], None]) -> int:
        final = self.root / "blobs" / blob
        if final.is_file():
            return 0
        tmp = final.with_name(f".{blob}.{os.getpid()}.tmp")
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, CHUNK)
                fout.flush()
                os.fsync(fout.fileno())
            os.rename(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        size = final.stat().st_size
        advance(size)
        return size


def manifest_json(manifest: Manifest) -> dict[str, Any]:
    return dict(json.loads(manifest.to_json()))
