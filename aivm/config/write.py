"""Edit the config file in place with tomlkit, keeping the user's comments and layout.

Every write: take the lock file, re-read the file, refuse if it changed since
this process loaded it (reason "concurrent-edit"), apply the edit, validate
the result (an edit never leaves an invalid file), then write a temp file,
fsync it and rename it over the old one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aivm.config import load as load_mod
from aivm.config import schema, stamp
from aivm.errors import ConfigError

if TYPE_CHECKING:
    from tomlkit import TOMLDocument

Change = Callable[["TOMLDocument", schema.Config], None]
RECALL: Any = object()              # default `since`: the stamp of this process's last load
LOCK_TIMEOUT_S = 10.0


def edit(path: Path, change: Change, *, since: stamp.Stamp | None | Any = RECALL) -> schema.Config:
    """Apply `change(doc, current_config)` to the file and return the new config.

    `since` is what the caller saw: a Stamp, None for "the file did not exist",
    or RECALL (the default) for whatever this process last loaded from `path`
    (no check when it never loaded it).
    """
    import tomlkit

    with locked(path):
        found = stamp.read(path)
        text = load_mod.decode(found[0], path) if found else ""
        _refuse_if_changed(path, found[1] if found else None, since)
        current = load_mod.loads(text, path)
        doc = tomlkit.parse(text)
        change(doc, current)
        new_text = tomlkit.dumps(doc)
        cfg = load_mod.loads(new_text, path)
        _replace(path, new_text.encode())
    return cfg


def write_text(path: Path, text: str, *, since: stamp.Stamp | None | Any = RECALL) -> None:
    """Replace the whole file with valid config `text` (init writes this way)."""
    load_mod.loads(text, path)
    write_bytes(path, text.encode(), since=since)


def write_bytes(path: Path, data: bytes, *, since: stamp.Stamp | None | Any = RECALL) -> None:
    """Replace the whole file, unvalidated (restoring a file after a rejected edit)."""
    with locked(path):
        found = stamp.read(path)
        _refuse_if_changed(path, found[1] if found else None, since)
        _replace(path, data)


def _refuse_if_changed(path: Path, now: stamp.Stamp | None, since: Any) -> None:
    if since is RECALL:
        known, since = stamp.recalled(path)
        if not known:
            return
    same = (now is None and since is None) or (now is not None and now.matches(since))
    if not same:
        raise ConfigError(f"{path} changed since aivm read it", reason="concurrent-edit",
                          hint="another aivm or an editor wrote it meanwhile; re-run the "
                               "command to apply it to the new contents")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<dir>/.<name>.lock` (kept; deleting lock files races)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    fd = _acquire(lock)
    try:
        yield
    finally:
        os.close(fd)


def _acquire(lock: Path) -> int:
    from aivm import fsutil

    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            return fsutil.open_lock(lock, wait=False, mode=0o600)
        except fsutil.Busy:
            if time.monotonic() > deadline:
                raise ConfigError(f"{lock} is held by another aivm", reason="config-locked",
                                  hint="wait for the other aivm command to finish") from None
            time.sleep(0.05)


def _replace(path: Path, data: bytes) -> None:
    """Atomically replace `path` (fsynced, keeping its mode) and remember its new stamp."""
    from aivm import fsutil

    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fsutil.atomic_write(path, data, mode=mode)
    stamp.remember(path, stamp.read(path)[1])  # type: ignore[index]


# ---- the edits callers make -------------------------------------------------

def upsert_vm(path: Path, vm: schema.Vm, **kw: Any) -> schema.Config:
    """Add the VM, or update the keys of its [[vms]] entry that differ."""
    def change(doc: TOMLDocument, cfg: schema.Config) -> None:
        old = cfg.vm(vm.name)
        values = _differences(vm, old or cfg.defaults, always=("name",) if old is None else ())
        if vm.host_uid_match:
            values.pop("uid", None)
            values.pop("gid", None)
        _upsert(doc, "vms", {"name": vm.name}, values)
    return edit(path, change, **kw)


def upsert_network(path: Path, net: schema.Network, **kw: Any) -> schema.Config:
    always = ("name", "bridge", "subnet", "gateway", "dhcp_start", "dhcp_end")

    def change(doc: TOMLDocument, cfg: schema.Config) -> None:
        old = next((n for n in cfg.networks if n.name == net.name), None)
        _upsert(doc, "networks", {"name": net.name},
                _differences(net, old or schema.Network(), always=() if old else always))
    return edit(path, change, **kw)


def upsert_attachment(path: Path, att: schema.Attachment, **kw: Any) -> schema.Config:
    def change(doc: TOMLDocument, cfg: schema.Config) -> None:
        key = {"host_path": att.host_path, "vm": att.vm}
        old = next((a for a in cfg.attachments if a.host_path == att.host_path
                    and a.vm == att.vm), None)
        base = old or schema.Attachment(att.host_path, att.vm)
        _upsert(doc, "attachments", key, _differences(att, base, always=("mode",)))
    return edit(path, change, **kw)


def pin_image(path: Path, name: str, *, url: str, sha256: str, **kw: Any) -> schema.Config:
    """Record a fetched image's URL and sha256 under [[images]] name."""
    values = {"source": schema.ImageSource.FETCH.value, "url": url, "sha256": sha256}
    return edit(path, lambda doc, cfg: _upsert(doc, "images", {"name": name}, values), **kw)


def set_active_vm(path: Path, name: str, **kw: Any) -> schema.Config:
    def change(doc: TOMLDocument, cfg: schema.Config) -> None:
        if name and cfg.vm(name) is None:
            raise ConfigError(f"no VM named {name!r} to make active", reason="unknown-vm",
                              hint="choose one of: " + (", ".join(v.name for v in cfg.vms)
                                                        or "(none)"))
        doc["active_vm"] = name
    return edit(path, change, **kw)


def remove_attachment(path: Path, host_path: str, vm: str, **kw: Any) -> schema.Config:
    key = {"host_path": host_path, "vm": vm}
    return edit(path, lambda doc, cfg: _remove(doc, "attachments", key), **kw)


def remove_vm(path: Path, name: str, **kw: Any) -> schema.Config:
    """Remove the VM, its attachments, and active_vm if it named it."""
    def change(doc: TOMLDocument, cfg: schema.Config) -> None:
        _remove(doc, "vms", {"name": name})
        for att in cfg.attachments:
            if att.vm == name:
                _remove(doc, "attachments", {"host_path": att.host_path, "vm": name})
        if doc.get("active_vm") == name:
            del doc["active_vm"]
    return edit(path, change, **kw)


# ---- tomlkit helpers --------------------------------------------------------

def _differences(new: Any, old: Any, always: tuple[str, ...] = ()) -> dict[str, Any]:
    """TOML values of the fields of `new` that differ from `old`, plus `always`."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(new):
        value, before = getattr(new, f.name), getattr(old, f.name)
        if dataclasses.is_dataclass(value):
            sub = _differences(value, before)
            if sub:
                out[f.name] = sub
        elif (f.name in always or value != before) and value is not None:
            out[f.name] = to_toml(value)
    return out


def to_toml(value: Any) -> Any:
    """A schema value as plain TOML data: enums as strings, tuples as lists."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [to_toml(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_toml(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None and f.name != "path"}
    return value


def _find(doc: TOMLDocument, section: str, key: dict[str, str]) -> Any:
    for entry in doc.get(section, []):
        if all(entry.get(k) == v for k, v in key.items()):
            return entry
    return None


def _upsert(doc: TOMLDocument, section: str, key: dict[str, str], values: dict[str, Any]) -> None:
    import tomlkit

    entry = _find(doc, section, key)
    if entry is None:
        entry = tomlkit.table()
        before = doc[section][-1].as_string() if section in doc else doc.as_string()
        entry.trivia.indent = "\n" if before.strip() and not before.endswith("\n\n") else ""
        for k, v in {**key, **values}.items():
            entry[k] = v
        if section in doc:
            if list(doc)[-1] != section:
                entry.add(tomlkit.nl())   # keep a blank line before the table that follows
            doc[section].append(entry)
        else:
            aot = tomlkit.aot()
            aot.append(entry)
            doc[section] = aot
        return
    _set_all(entry, values)


def _set_all(table: Any, values: dict[str, Any]) -> None:
    for k, v in values.items():
        if isinstance(v, dict) and k in table and isinstance(table[k], dict):
            _set_all(table[k], v)
        else:
            table[k] = v


def _remove(doc: TOMLDocument, section: str, key: dict[str, str]) -> None:
    entries = doc.get(section)
    if entries is None:
        return
    for i in reversed(range(len(entries))):
        if all(entries[i].get(k) == v for k, v in key.items()):
            del entries[i]
    if len(entries) == 0:
        del doc[section]
