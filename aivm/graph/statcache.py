"""Hash a large file once: digests remembered by (device, inode, size, mtime_ns).

The cache is a small JSON file written by write-then-rename; a corrupt or
unreadable cache degrades to re-hashing, never to an error (ninja's build
log does the same).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from aivm import fsutil
from aivm.graph import keys


class StatCache:
    def __init__(self, path: Path | None, digest: Callable[[Path], str] = keys.file_digest):
        self.path = path
        self._digest = digest
        self._entries: dict[str, list[int | str]] = self._load()
        self._dirty = False
        self._lock = threading.Lock()
        self.hashed_bytes = 0
        self.consulted: set[Path] = set()   # every file digested (aivm/fastpath.py stats them)

    def _load(self) -> dict[str, list[int | str]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def digest(self, path: Path) -> str:
        path = path.absolute()
        st = path.stat()
        stamp: list[int | str] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]
        with self._lock:
            self.consulted.add(path)
            known = self._entries.get(str(path))
        if known is not None and known[:4] == stamp:
            return str(known[4])
        value = self._digest(path)
        with self._lock:
            self.hashed_bytes += st.st_size
            self._entries[str(path)] = [*stamp, value]
            self._dirty = True
        return value

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(self.path, json.dumps(self._entries), durable=False)  # a cache
        self._dirty = False
