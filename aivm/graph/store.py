"""The content-addressed store.

Layout (documented for users in store/README.md):

    <root>/aivm-store-version        format version, checked on open
    <root>/.lock                     flock: builds shared, gc exclusive
    <root>/<key[:32]>-<name>/        an entry; `manifest.json` inside is its commit marker
    <root>/.tmp-*                    entries being built (garbage if no build holds the lock)
    <root>/locks/<key[:32]>.lock     one builder per key at a time
    <root>/names/<name>.json         the last manifest built for a node name (for --explain)
    <root>/roots/<root-name>         gc roots: symlinks to entries, made by write-then-rename
    <root>/cache/stat.json           the stat cache of hashed local files

An entry is built in a temporary sibling, its manifest written last, its
write bits dropped, then renamed into place: a crash leaves only a `.tmp-*`
directory, which gc removes, never a half-valid entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aivm.errors import BuildError, StoreError

FORMAT_VERSION = 1
VERSION_FILE = "aivm-store-version"
MANIFEST = "manifest.json"
_NAME_OK = re.compile(r"[^A-Za-z0-9._+-]")


def safe_name(name: str) -> str:
    """A node name as it may appear in a store path."""
    return _NAME_OK.sub("_", name)[:80]


@dataclass(frozen=True)
class Manifest:
    key: str
    name: str
    kind: str
    version: int
    params: Mapping[str, Any]
    inputs: Mapping[str, str]          # role -> input key
    input_entries: Mapping[str, str]   # role -> entry directory name, for gc marking
    templates: Mapping[str, str]
    files: Mapping[str, str]
    created: str
    size: int
    build_seconds: float

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True, default=dict)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(**{f: data[f] for f in cls.__dataclass_fields__})


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    # layout -------------------------------------------------------------
    def ensure(self) -> Store:
        """Create the store layout, or check the format of an existing one."""
        version_file = self.root / VERSION_FILE
        if version_file.exists():
            found = version_file.read_text().strip()
            if found != str(FORMAT_VERSION):
                raise StoreError(
                    f"store {self.root} has format {found}, "
                    f"this aivm reads format {FORMAT_VERSION}",
                    hint="use another --store, or upgrade aivm", reason="store-format")
            return self
        try:
            for sub in ("locks", "names", "roots", "cache"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o755)
            _atomic_write(version_file, f"{FORMAT_VERSION}\n")
        except OSError as exc:
            raise StoreError(f"cannot create the store at {self.root}: {exc.strerror}",
                             hint="choose a writable place with --store or AIVM_STORE",
                             reason="store-unwritable") from exc
        return self

    def entry_path(self, key: str, name: str) -> Path:
        return self.root / f"{key[:32]}-{safe_name(name)}"

    def lookup(self, key: str, name: str) -> Path | None:
        path = self.entry_path(key, name)
        return path if (path / MANIFEST).is_file() else None

    def manifest(self, entry: Path) -> Manifest:
        return Manifest.from_json((entry / MANIFEST).read_text())

    def entries(self) -> list[Path]:
        """Every directory that looks like an entry, committed or not (temps excluded)."""
        found = []
        for child in self.root.iterdir():
            if child.is_dir() and re.match(r"^[0-9a-f]{32}-", child.name):
                found.append(child)
        return sorted(found)

    def temporaries(self) -> list[Path]:
        return sorted(p for p in self.root.glob(".tmp-*") if p.is_dir())

    # locking -----------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, *, exclusive: bool, wait: bool = True) -> Iterator[None]:
        """Builds hold the store lock shared; gc holds it exclusive."""
        with _flock(self.root / ".lock", exclusive=exclusive, wait=wait,
                    busy=StoreError("the store is busy (a build or gc holds its lock)",
                                    hint="wait for the other aivm to finish", reason="store-busy")):
            yield

    # commit ------------------------------------------------------------
    def commit(self, key: str, name: str, build: Callable[[Path], None],
               describe: Callable[[int, float], Manifest]) -> tuple[Path, bool]:
        """Build and commit one entry; return (path, built_by_us).

        `build` writes into an empty temporary directory. `describe(size,
        seconds)` returns the manifest, which is written last. A second
        process asking for the same key waits for the first and reuses its
        entry, so every key is built once.
        """
        with _flock(self.root / "locks" / f"{key[:32]}.lock", exclusive=True, wait=True):
            existing = self.lookup(key, name)
            if existing is not None:
                return existing, False
            final = self.entry_path(key, name)
            if final.exists():  # a directory with no manifest is garbage
                remove_tree(final)
            unique = f"{os.getpid()}-{time.monotonic_ns()}"
            tmp = self.root / f".tmp-{key[:32]}-{safe_name(name)}-{unique}"
            tmp.mkdir()
            try:
                started = time.monotonic()
                build(tmp)
                if (tmp / MANIFEST).exists():
                    raise BuildError(f"node {name} wrote a file named {MANIFEST}",
                                     hint="that name is reserved for the store",
                                     reason="reserved-name")
                manifest = describe(tree_size(tmp), time.monotonic() - started)
                _write_synced(tmp / MANIFEST, manifest.to_json())
                make_read_only(tmp)
                os.rename(tmp, final)
            except BaseException:
                remove_tree(tmp)
                raise
            self.record_name(manifest)
            return final, True

    # names: the last build of each node name, for explanations ----------
    def record_name(self, manifest: Manifest) -> None:
        _atomic_write(self.root / "names" / f"{safe_name(manifest.name)}.json", manifest.to_json())

    def last_build(self, name: str) -> Manifest | None:
        try:
            return Manifest.from_json((self.root / "names" / f"{safe_name(name)}.json").read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # gc roots ------------------------------------------------------------
    def add_root(self, root_name: str, entry: Path) -> Path:
        link = self.root / "roots" / safe_name(root_name)
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(entry)
        os.replace(tmp, link)
        return link

    def remove_root(self, root_name: str) -> bool:
        try:
            (self.root / "roots" / safe_name(root_name)).unlink()
            return True
        except FileNotFoundError:
            return False

    def remove_roots(self, prefix: str) -> int:
        removed = 0
        for link in (self.root / "roots").glob(f"{safe_name(prefix)}*"):
            link.unlink()
            removed += 1
        return removed

    def roots(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        roots_dir = self.root / "roots"
        if roots_dir.is_dir():
            for link in sorted(roots_dir.iterdir()):
                if link.is_symlink() and not link.name.startswith("."):
                    out[link.name] = Path(os.readlink(link))
        return out


def tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def make_read_only(path: Path) -> None:
    for dirpath, dirs, files in os.walk(path, topdown=False):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IMODE(os.lstat(p).st_mode) & ~0o222 | 0o444)
        for d in dirs:
            os.chmod(os.path.join(dirpath, d), 0o555)
    os.chmod(path, 0o555)


def remove_tree(path: Path) -> None:
    """Remove an entry or temp dir, restoring write bits that commit dropped."""
    if not path.exists():
        return
    for dirpath, dirs, _files in os.walk(path):
        os.chmod(dirpath, 0o755)
        for d in dirs:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
    shutil.rmtree(path)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_synced(tmp, text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _flock(path: Path, *, exclusive: bool, wait: bool,
           busy: Exception | None = None) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if busy is not None:
                raise busy from None
            raise
        yield
    finally:
        os.close(fd)
