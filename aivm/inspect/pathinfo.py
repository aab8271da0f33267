"""`aivm path-info`: what an entry is, how big it and its closure are."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aivm import qcow2
from aivm.graph.store import MANIFEST, Manifest, Store, tree_size


@dataclass(frozen=True)
class DiskFile:
    """A qcow2 file (or any file): its virtual size (qcow2 header) and what it takes on disk."""

    path: Path
    allocated: int
    virtual: int | None = None     # None: not a qcow2 file
    backing: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "allocated": self.allocated, "virtual": self.virtual,
                "backing": self.backing}


@dataclass(frozen=True)
class PathInfo:
    name: str
    kind: str
    key: str
    path: Path
    built: bool
    size: int = 0
    closure_size: int = 0
    closure: tuple[Path, ...] = ()
    created: str = ""
    build_seconds: float = 0.0
    digest: str = ""
    disks: tuple[DiskFile, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "key": self.key, "path": str(self.path),
                "built": self.built, "size": self.size, "closure_size": self.closure_size,
                "closure": [str(p) for p in self.closure], "created": self.created,
                "build_seconds": self.build_seconds, "digest": self.digest,
                "qcow2": [d.to_json() for d in self.disks]}


@dataclass(frozen=True)
class VmFiles:
    """A VM's own files outside the store: its writable disk, console log, other state."""

    vm: str
    folder: Path
    files: tuple[DiskFile, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"vm": self.vm, "folder": str(self.folder),
                "files": [f.to_json() for f in self.files]}


def disk_file(path: Path) -> DiskFile:
    allocated = os.lstat(path).st_blocks * 512
    header = qcow2.read_header(path) if path.is_file() and not path.is_symlink() else None
    if header is None:
        return DiskFile(path, allocated)
    return DiskFile(path, allocated, header.virtual_size, header.backing)


def closure(store: Store, entry: Path) -> list[Path]:
    """`entry` and every entry it depends on (through manifests), each once, entry first."""
    seen: list[Path] = []
    todo = [entry]
    while todo:
        path = todo.pop(0)
        if path in seen or not (path / MANIFEST).is_file():
            continue
        seen.append(path)
        todo += [store.root / d for d in store.manifest(path).input_entries.values()]
    return seen


def entry_info(store: Store, name: str, kind: str, key: str, path: Path) -> PathInfo:
    if not (path / MANIFEST).is_file():
        return PathInfo(name, kind, key, path, built=False)
    manifest: Manifest = store.manifest(path)
    members = closure(store, path)
    disks = tuple(disk_file(p) for p in sorted(path.rglob("*.qcow2")))
    return PathInfo(manifest.name, manifest.kind, manifest.key, path, True, tree_size(path),
                    sum(tree_size(p) for p in members), tuple(members), manifest.created,
                    manifest.build_seconds, manifest.digest, disks)


def vm_files(vm: str, folder: Path) -> VmFiles:
    """The files of the VM's state folder (its writable disk, console log, saved state)."""
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file())
    except OSError:
        files = []
    return VmFiles(vm, folder, tuple(disk_file(p) for p in files))
