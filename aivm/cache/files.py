"""An entry as a list of files, and the streamed copy both backends use."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from aivm.graph.digest import MANIFEST, file_hash

CHUNK = 4 << 20
Advance = Callable[[int], None]


@dataclass(frozen=True)
class Item:
    """One path of an entry: "dir", "link" (target) or "file" (mode, size, blake3 blob)."""

    path: str
    type: str
    mode: int = 0
    size: int = 0
    blob: str = ""
    target: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        item = cls(**{f: data[f] for f in cls.__dataclass_fields__ if f in data})
        if item.type not in ("dir", "link", "file") or _escapes(item.path, item.target):
            raise ValueError(f"bad item {data!r}")
        return item


def _escapes(path: str, target: str) -> bool:
    """A path (or link target) that leaves the entry is refused: no `..`, no absolute."""
    parts = Path(path).parts
    return (not path or Path(path).is_absolute() or ".." in parts
            or (bool(target) and (Path(target).is_absolute()
                                  or os.path.normpath(Path(path).parent / target)
                                  .startswith(".."))))


def items(entry: Path) -> list[Item]:
    """Every path of `entry` but its manifest, sorted."""
    out = []
    for dirpath, dirs, files in os.walk(entry):
        for name in sorted(dirs + files):
            full = Path(dirpath) / name
            rel = str(full.relative_to(entry))
            if rel == MANIFEST:
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out.append(Item(rel, "link", target=os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                out.append(Item(rel, "dir"))
            else:
                out.append(Item(rel, "file", stat.S_IMODE(st.st_mode), st.st_size,
                                file_hash(full)))
    return sorted(out, key=lambda i: i.path)


def copy_stream(src: BinaryIO, dst: BinaryIO, advance: Advance) -> int:
    """Copy in chunks (a multi-GiB qcow2 is never read into memory); bytes copied."""
    total = 0
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        total += len(chunk)
        advance(len(chunk))
    return total


def materialise(entries: list[Item], into: Path, open_blob: Callable[[Item], BinaryIO],
                advance: Advance) -> None:
    """Recreate the items in the empty directory `into`, reading each file's blob."""
    for item in entries:
        target = into / item.path
        if item.type == "dir":
            target.mkdir(parents=True, exist_ok=True)
        elif item.type == "link":
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(item.target, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open_blob(item) as src, open(target, "wb") as dst:
                copy_stream(src, dst, advance)
            os.chmod(target, item.mode & 0o7777)
