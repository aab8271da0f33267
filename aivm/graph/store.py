"""The content-addressed store.

Layout (documented for users in store/README.md):

    <root>/aivm-store-version        format version, checked on open
    <root>/.lock                     flock: builds shared, gc exclusive
    <root>/<key[:32]>-<name>/        an entry; `manifest.json` inside is its commit marker
    <root>/.tmp-<key[:32]>-*         entries being built; the builder holds locks/<key[:32]>.lock
    <root>/locks/<key[:32]>.lock     one builder per key at a time
    <root>/names/<name>.json         the last manifest built for a node name (for --explain)
    <root>/roots/vms/<vm>/<node>     a VM's gc roots: relative symlinks to entries
    <root>/roots/explicit/<name>     other gc roots (names escaped injectively, never cut)
    <root>/roots/pending/<id>.json   entries a running aivm built or reused, flocked by it
    <root>/cache/stat.json           the stat cache of hashed local files

An entry is built in a temporary sibling, its manifest written last, its
write bits dropped, every file and directory fsynced, then renamed into place
(and the store directory fsynced): a crash leaves only a `.tmp-*` directory,
which the next build (when its key's lock is free) or gc removes, never a
half-valid entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import stat
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from aivm import fsutil
from aivm.errors import BuildError, StoreError

FORMAT_VERSION = 2  # 2: roots per VM in roots/vms/, explicit roots escaped, pending roots
UPGRADES = {"1": "roots of format 1 (symlinks directly in roots/) stay explicit roots"}
VERSION_FILE = "aivm-store-version"
MANIFEST = "manifest.json"
_NAME_OK = re.compile(r"[^A-Za-z0-9._+-]")
_ENTRY = re.compile(r"[0-9a-f]{32}-.+")
_TEMP = re.compile(r"\.tmp-([0-9a-f]{32})-.+")


def safe_name(name: str) -> str:
    """A node name as it may appear in an entry's directory name (after its key)."""
    return _NAME_OK.sub("_", name)[:80]


def escape(name: str) -> str:
    """A root's name as one path component, injectively: percent-encoding of everything
    but [A-Za-z0-9_.~-] and of a leading dot; never cut (a name too long is refused)."""
    out = quote(name, safe="")
    if out.startswith("."):
        out = "%2E" + out[1:]
    if not out or len(out.encode()) > 255:
        raise StoreError(f"gc root name {name!r} is empty or too long",
                         hint="root names are VM and node names of at most 200 characters",
                         reason="root-name")
    return out


@dataclass(frozen=True, order=True)
class Root:
    """A gc root: a VM's (`vm` set, `name` its node) or an explicit one (`vm` empty)."""

    vm: str
    name: str

    @classmethod
    def explicit(cls, name: str) -> Root:
        return cls("", name)

    @property
    def relpath(self) -> str:
        """Where its link sits under <store>/roots/."""
        if self.vm:
            return f"vms/{escape(self.vm)}/{escape(self.name)}"
        return f"explicit/{escape(self.name)}"

    def __str__(self) -> str:
        return f"VM {self.vm}: {self.name}" if self.vm else self.name


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
    digest: str = ""   # the output digest (aivm/graph/digest.py); "" in entries of older aivm

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True, default=dict)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        optional = {"digest"}
        return cls(**{f: data[f] for f in cls.__dataclass_fields__
                      if f not in optional or f in data})


class Store:
    def __init__(self, root: Path, *, holds: bool = True) -> None:
        """`holds=False`: builds write no pending roots (a dry run writes nothing)."""
        self.root = root.absolute()
        self.holds = holds
        self._held: list[tuple[int, Path]] = []  # pending roots this object holds
        weakref.finalize(self, _release, self._held)

    # layout -------------------------------------------------------------
    def ensure(self) -> Store:
        """Create the store layout, or check (and upgrade) the format of an existing one."""
        version_file = self.root / VERSION_FILE
        found = version_file.read_text().strip() if version_file.exists() else None
        if found is not None and found != str(FORMAT_VERSION) and found not in UPGRADES:
            raise StoreError(
                f"store {self.root} has format {found}, "
                f"this aivm reads format {FORMAT_VERSION}",
                hint="use another --store, or upgrade aivm", reason="store-format")
        if found == str(FORMAT_VERSION):
            return self
        try:
            for sub in ("locks", "names", "roots/vms", "roots/explicit", "roots/pending",
                        "cache"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            if found is None:
                self.root.chmod(0o755)
            fsutil.atomic_write(version_file, f"{FORMAT_VERSION}\n")
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
        return sorted(c for c in self.root.iterdir() if _ENTRY.fullmatch(c.name) and c.is_dir())

    def temporaries(self) -> list[Path]:
        return sorted(p for p in self.root.glob(".tmp-*") if p.is_dir())

    def entry_of(self, path: Path) -> Path | None:
        """The entry of this store that `path` is, by identity (device, inode), whatever the
        spelling (a symlinked or bind-mounted store, `sub/..`); None for anything else."""
        if not _ENTRY.fullmatch(path.name):
            return None
        mine = self.root / path.name
        try:
            return mine if os.path.samefile(path, mine) else None
        except OSError:
            return None

    # locking -----------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, *, exclusive: bool, wait: bool = True) -> Iterator[None]:
        """Builds hold the store lock shared; gc holds it exclusive."""
        try:
            with fsutil.locked(self.root / ".lock", exclusive=exclusive, wait=wait):
                yield
        except fsutil.Busy:
            raise StoreError("the store is busy (a build or gc holds its lock)",
                             hint="wait for the other aivm to finish",
                             reason="store-busy") from None

    def _key_lock(self, key32: str) -> Path:
        return self.root / "locks" / f"{key32}.lock"

    # commit ------------------------------------------------------------
    def commit(self, key: str, name: str, build: Callable[[Path], None],
               describe: Callable[[int, float], Manifest]) -> tuple[Path, bool]:
        """Build and commit one entry; return (path, built_by_us).

        `build` writes into an empty temporary directory. `describe(size,
        seconds)` returns the manifest, which is written last. A second
        process asking for the same key waits for the first and reuses its
        entry, so every key is built once.
        """
        with fsutil.locked(self._key_lock(key[:32])):
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
                manifest = self._fill(tmp, name, build, describe)
                os.rename(tmp, final)
                fsutil.fsync_dir(self.root)
            except BaseException:
                remove_tree(tmp)
                raise
            self.record_name(manifest)
            return final, True

    def _fill(self, tmp: Path, name: str, build: Callable[[Path], None],
              describe: Callable[[int, float], Manifest]) -> Manifest:
        """Build into `tmp`, write the manifest, drop write bits, fsync it all."""
        started = time.monotonic()
        build(tmp)
        if (tmp / MANIFEST).exists():
            raise BuildError(f"node {name} wrote a file named {MANIFEST}",
                             hint="that name is reserved for the store", reason="reserved-name")
        manifest = describe(tree_size(tmp), time.monotonic() - started)
        manifest = dataclasses.replace(manifest, digest=_checked_digest(tmp, name, manifest))
        (tmp / MANIFEST).write_text(manifest.to_json())
        make_read_only(tmp)
        fsutil.fsync_tree(tmp)
        return manifest

    def sweep_temporaries(self) -> list[Path]:
        """Remove the temps of dead builders: a builder holds its key's lock for as long as
        its temp exists, so a temp whose key lock is free is a killed build's leftover."""
        removed = []
        for tmp in self.temporaries():
            match = _TEMP.fullmatch(tmp.name)
            if match is None:
                continue
            try:
                with fsutil.locked(self._key_lock(match.group(1)), wait=False):
                    if tmp.exists():
                        remove_tree(tmp)
                        removed.append(tmp)
            except fsutil.Busy:
                continue  # its builder is alive
        return removed

    # names: the last build of each node name, for explanations ----------
    def record_name(self, manifest: Manifest) -> None:
        fsutil.atomic_write(self.root / "names" / f"{safe_name(manifest.name)}.json",
                            manifest.to_json())

    def last_build(self, name: str) -> Manifest | None:
        try:
            return Manifest.from_json((self.root / "names" / f"{safe_name(name)}.json").read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # gc roots ------------------------------------------------------------
    def add_root(self, root: Root | str, entry: Path, *, hold_previous: bool = False) -> Path:
        """Root `entry` (an entry of this store) under `root` (a str: an explicit root).

        `hold_previous`: the entry the root named before stays held (`hold`) while this
        object lives, so a later step of the same plan can root it again (the image a
        VM's disk still sits on) without a moment in which gc may take it."""
        root = Root.explicit(root) if isinstance(root, str) else root
        mine = self.entry_of(entry)
        if mine is None:
            raise StoreError(f"{entry} is not an entry of the store {self.root}",
                             hint="roots name entries of their own store", reason="root-target")
        link = self.root / "roots" / root.relpath
        link.parent.mkdir(parents=True, exist_ok=True)
        previous = self.entry_of(_target(link)) if link.is_symlink() else None
        if hold_previous and previous is not None and previous != mine:
            self.hold([previous])
        fsutil.replace_symlink(link, os.path.relpath(mine, link.parent))
        return link

    def remove_root(self, root: Root | str) -> bool:
        root = Root.explicit(root) if isinstance(root, str) else root
        link = self.root_links().get(root)  # also a root left by format 1
        if link is None:
            return False
        link.unlink(missing_ok=True)
        return True

    def vm_roots_dir(self, vm: str) -> Path:
        return self.root / "roots" / "vms" / escape(vm)

    def remove_vm_roots(self, vm: str) -> int:
        """Drop every root of VM `vm` (exactly that name: its own directory)."""
        folder = self.vm_roots_dir(vm)
        count = len(self.vm_roots(vm))
        if folder.is_dir():
            shutil.rmtree(folder)
            fsutil.fsync_dir(folder.parent)
        return count

    def vm_roots(self, vm: str) -> dict[str, Path]:
        """node name -> entry, for the roots of VM `vm`."""
        return {r.name: p for r, p in self.roots().items() if r.vm == vm}

    def roots(self) -> dict[Root, Path]:
        """Every root and the entry path its link names (normalised, not resolved)."""
        return {root: _target(link) for root, link in self.root_links().items()}

    def root_links(self) -> dict[Root, Path]:
        """Every root and its symlink (stat it to reach the entry, whatever the spelling)."""
        top = self.root / "roots"
        out: dict[Root, Path] = {}
        for link in _links(top):  # format 1 left its roots here: explicit ones now
            out[Root.explicit(link.name)] = link
        for link in _links(top / "explicit"):
            out[Root.explicit(unquote(link.name))] = link
        vms = top / "vms"
        for folder in sorted(vms.iterdir()) if vms.is_dir() else ():
            for link in _links(folder):
                out[Root(unquote(folder.name), unquote(link.name))] = link
        return out

    # pending roots: what a running aivm built or reused, until it roots it ---------
    def hold(self, entries: Iterable[Path]) -> Path | None:
        """Keep `entries` from gc while this object lives (or until `release`): a file
        naming them, flocked by this process. Written under the build's shared lock, so
        a gc never runs between the build and the hold."""
        if not self.holds:
            return None
        folder = self.root / "roots" / "pending"
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{os.getpid()}-{time.monotonic_ns()}.json"
        tmp = folder / f".{final.name}.tmp"
        fd = fsutil.open_lock(tmp)
        try:
            os.write(fd, json.dumps(sorted({p.name for p in entries})).encode())
            os.fsync(fd)
            os.rename(tmp, final)
            fsutil.fsync_dir(folder)
        except BaseException:
            os.close(fd)
            raise
        self._held.append((fd, final))
        return final

    def release(self) -> None:
        """Drop the pending roots this object holds (the VM's roots are written by then)."""
        _release(self._held)

    def pending(self) -> tuple[set[str], list[Path]]:
        """(entry names held by live aivm processes, pending files whose holder is gone)."""
        held: set[str] = set()
        stale: list[Path] = []
        folder = self.root / "roots" / "pending"
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            if not fsutil.is_locked(path):
                stale.append(path)
                continue
            with contextlib.suppress(OSError, ValueError):
                held.update(str(n) for n in json.loads(path.read_text()))
        return held, stale


def _checked_digest(tmp: Path, name: str, manifest: Manifest) -> str:
    """The output digest of `tmp`; when `manifest` already names one (a substituted entry),
    the two must agree, or nothing is committed."""
    from aivm.graph.digest import entry_digest

    found = entry_digest(tmp)
    if manifest.digest and manifest.digest != found:
        raise StoreError(f"entry {name}: nothing was committed: its content has digest "
                         f"{found}, its manifest says {manifest.digest}",
                         hint="the copy is damaged or was tampered with", reason="digest-mismatch")
    return found


def _release(held: list[tuple[int, Path]]) -> None:
    while held:
        fd, path = held.pop()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def _links(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_symlink() and not p.name.startswith("."))


def _target(link: Path) -> Path:
    return Path(os.path.normpath(link.parent / os.readlink(link)))


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
