"""seed-iso: a cloud-init NoCloud seed (volume label `cidata`, Joliet + Rock Ridge).

Writes `user-data`, `meta-data` and `network-config` into the entry and packs
them into `seed.iso` with pycdlib. The ssh public key is a file input read at
build time, so a new key makes a new seed.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from time import struct_time
from typing import Any, ClassVar

from aivm import buildlog
from aivm.errors import AivmError
from aivm.graph.node import BuildContext, Node
from aivm.recipes import render, values
from aivm.recipes.base import RecipeBase

SEED_FILES = ("user-data", "meta-data", "network-config")
ISO_NAMES = {"user-data": "USER_DATA", "meta-data": "META_DATA",
             "network-config": "NETWORK_CONFIG"}


class SeedIso(RecipeBase):
    kind: ClassVar[str] = "seed-iso"
    OUTPUT: ClassVar[str] = "seed.iso"
    version: ClassVar[int] = 1
    templates: ClassVar[tuple[str, ...]] = ("user-data.j2", "meta-data.j2", "network-config.j2")
    defaults: ClassVar[Mapping[str, Any]] = {
        "uid": None, "gid": None, "timezone": "UTC", "password_login": False,
        "packages": (), "package_update": False, "mac": ""}
    required: ClassVar[tuple[str, ...]] = ("hostname", "user")
    files: ClassVar[tuple[str, ...]] = ("ssh_pubkey",)

    def check(self, node: Node) -> dict[str, Any]:
        p = super().check(node)
        return {
            "hostname": values.hostname(p["hostname"]),
            "user": values.user(p["user"]),
            "uid": _id(p["uid"], "uid"),
            "gid": _id(p["gid"], "gid"),
            "timezone": values.timezone(p["timezone"]),
            "password_login": values.boolean(p["password_login"], "password_login"),
            "packages": values.packages(p["packages"]),
            "package_update": values.boolean(p["package_update"], "package_update"),
            "mac": values.mac(p["mac"]) if p["mac"] else "",
        }

    def build(self, ctx: BuildContext, into: Path) -> None:
        v = self.check(ctx.node)
        v["ssh_keys"] = values.ssh_keys(_read(ctx.files["ssh_pubkey"]))
        v["instance_id"] = f"iid-{v['hostname']}-{ctx.key[:16]}"
        for name in SEED_FILES:
            render.write(into, name, f"{name}.j2", key=ctx.key, **v)
        write_iso(into / self.OUTPUT, {name: (into / name).read_bytes() for name in SEED_FILES})


def write_iso(path: Path, files: Mapping[str, bytes]) -> None:
    """The ISO, bit-reproducible: every date in it is ISO_EPOCH in UTC (pycdlib would
    stamp the wall clock in the local zone), files in sorted order."""
    import pycdlib

    with _fixed_clock():
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
        for name, data in sorted(files.items()):
            iso.add_fp(io.BytesIO(data), len(data), iso_path=f"/{ISO_NAMES[name]}.;1",
                       rr_name=name, joliet_path=f"/{name}")
        iso.write(str(path))
        iso.close()
    buildlog.note(f"pycdlib: wrote {path.name} ({path.stat().st_size} bytes: "
                  f"{', '.join(sorted(files))}), every date {ISO_DATE}")


ISO_EPOCH = 1  # 1970-01-01T00:00:01Z, as Nix stamps its store (0 means "no date" to ISO 9660)
ISO_DATE = "1970-01-01T00:00:01Z"
_CLOCK_LOCK = threading.Lock()
_PYCDLIB_TIME_USERS = ("pycdlib.pycdlib", "pycdlib.headervd", "pycdlib.dates", "pycdlib.utils")


class _EpochClock:
    """The `time` module as pycdlib's modules see it while a seed is written."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def time() -> float:
        return float(ISO_EPOCH)

    @staticmethod
    def localtime(secs: float | None = None) -> struct_time:
        return time.gmtime(ISO_EPOCH if secs is None else secs)


@contextlib.contextmanager
def _fixed_clock() -> Iterator[None]:
    """pycdlib has no date option: its modules' `time` is swapped (theirs only, under a lock
    so parallel builds agree) for a clock stopped at ISO_EPOCH in UTC."""
    import importlib

    modules = [importlib.import_module(m) for m in _PYCDLIB_TIME_USERS]
    with _CLOCK_LOCK:
        saved = [m.time for m in modules]
        for m in modules:
            m.time = _EpochClock()  # type: ignore[attr-defined]
        try:
            yield
        finally:
            for m, t in zip(modules, saved, strict=True):
                m.time = t  # type: ignore[attr-defined]


def _id(value: Any, what: str) -> int | None:
    return None if value is None else values.integer(value, what, 1000, 60000)


def _read(path: Path) -> str:
    """The public key file: a regular file of at most 1 MiB (values.read_small_file)."""
    try:
        return values.read_small_file(Path(path), "ssh_pubkey").decode()
    except (AivmError, UnicodeDecodeError) as exc:
        raise AivmError(f"cannot read the ssh public key {path}: {exc}",
                        hint="set ssh_pubkey to an existing .pub file (ssh-keygen -t ed25519)",
                        reason="invalid-param") from exc
