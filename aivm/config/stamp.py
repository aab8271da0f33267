"""What the config file looked like when it was read: mtime, size and digest.

`load()` remembers a stamp per path; a later write compares the file on disk
against it and refuses to overwrite an edit made in between (another aivm, an
editor). Content decides: a `touch` alone is not an edit.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

_REMEMBERED: dict[Path, Stamp | None] = {}


@dataclass(frozen=True)
class Stamp:
    mtime_ns: int
    size: int
    digest: str

    @classmethod
    def of(cls, st: os.stat_result, data: bytes) -> Stamp:
        return cls(st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest())

    def matches(self, other: Stamp | None) -> bool:
        return other is not None and other.digest == self.digest


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
