"""Output digests: what an entry holds, as one blake3 digest.

`entry_digest(path)` covers every file, directory and symlink under an entry
(its path relative to the entry, its type, permission bits and size; a file's
bytes, a symlink's target), in sorted order, under a context string of its
own. `manifest.json` is left out (it records the digest), and so is nothing
else: build logs live outside entries (`<store>/log/`).

The digest is recorded in the manifest at commit, re-checked by
`aivm store verify`, and checked on every entry a substituter hands over.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import blake3

DIGEST_SCHEME = 1
DIGEST_CONTEXT = f"aivm 2026-12-04 entry output digest v{DIGEST_SCHEME}"
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def entry_digest(path: Path) -> str:
    """The output digest of the entry (or temp dir) at `path`: "blake3:<hex>"."""
    outer = blake3.blake3(derive_key_context=DIGEST_CONTEXT)
    for rel, line in _records(path):
        outer.update(f"{len(rel.encode())}:{rel}\0{line}\n".encode())
    return f"blake3:{outer.hexdigest()}"


def _records(root: Path) -> Iterator[tuple[str, str]]:
    for rel in _walk(root):
        full = root / rel
        st = os.lstat(full)
        # the modes commit leaves (aivm.graph.store.make_read_only): no write bits, files
        # readable by all, directories 0555; so a digest taken before or after commit agrees
        mode = stat.S_IMODE(st.st_mode) & 0o7555 | 0o444
        if stat.S_ISLNK(st.st_mode):
            yield rel, f"link {os.readlink(full)}"
        elif stat.S_ISDIR(st.st_mode):
            yield rel, "dir"
        elif stat.S_ISREG(st.st_mode):
            yield rel, f"file {mode:o} {st.st_size} {file_hash(full)}"
        else:
            yield rel, f"other {stat.S_IFMT(st.st_mode):o}"


def _walk(root: Path) -> list[str]:
    out: list[str] = []
    for dirpath, dirs, files in os.walk(root):
        base = os.path.relpath(dirpath, root)
        for name in dirs + files:
            rel = name if base == "." else f"{base}/{name}"
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def file_hash(path: Path) -> str:
    """blake3 of a file's bytes (memory-mapped, multithreaded for big images)."""
    if os.path.getsize(path) == 0:
        return blake3.blake3().hexdigest()
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(path)
    return hasher.hexdigest()
