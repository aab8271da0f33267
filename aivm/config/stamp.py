"""What the config file looked like when it was read: mtime, size and content.

`load()` remembers a stamp per path; a later write compares the file on disk
against it and refuses to overwrite an edit made in between (another aivm, an
editor). Content decides: a `touch` alone is not an edit. Stamps never leave
the process and config files are small, so the stamp keeps the bytes
themselves rather than a digest (exact, and no hashlib import on the no-op path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

_REMEMBERED: dict[Path, Stamp | None] = {}


@dataclass(frozen=True)
class Stamp:
    mtime_ns: int
    size: int
    content: bytes = field(repr=False)

    @classmethod
    def of(cls, st: os.stat_result, data: bytes) -> Stamp:
        return cls(st.st_mtime_ns, st.st_size, data)

    def matches(self, other: Stamp | None) -> bool:
        return other is not None and other.size == self.size and other.content == self.content


def read(path: Path) -> tuple[bytes, Stamp] | None:
    """The file's bytes and stamp, or None when it does not exist."""
    try:
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
    except FileNotFoundError:
        return None
    return data, Stamp.of(st, data)


def remember(path: Path, stamp: Stamp | None) -> None:
    """Record what `path` held when this process last read or wrote it (None: absent)."""
    _REMEMBERED[path.absolute()] = stamp


def recalled(path: Path) -> tuple[bool, Stamp | None]:
    """(known, stamp): whether this process has read `path`, and what it held then."""
    key = path.absolute()
    return key in _REMEMBERED, _REMEMBERED.get(key)


def forget(path: Path) -> None:
    _REMEMBERED.pop(path.absolute(), None)
