"""seed-iso: a cloud-init NoCloud seed (volume label `cidata`, Joliet + Rock Ridge).

Writes `user-data`, `meta-data` and `network-config` into the entry and packs
them into `seed.iso` with pycdlib. The ssh public key is a file input read at
build time, so a new key makes a new seed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from aivm.errors import AivmError
from aivm.graph.node import BuildContext, Node
from aivm.recipes import render, values
from aivm.recipes.base import RecipeBase

SEED_FILES = ("user-data", "meta-data", "network-config")
ISO_NAMES = {"user-data": "USER_DATA", "meta-data": "META_DATA",
             "network-config": "NETWORK_CONFIG"}


class SeedIso(RecipeBase):
    kind: ClassVar[str] = "seed-iso"
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
        write_iso(into / "seed.iso", {name: (into / name).read_bytes() for name in SEED_FILES})


def write_iso(path: Path, files: Mapping[str, bytes]) -> None:
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, data in files.items():
        iso.add_fp(io.BytesIO(data), len(data), iso_path=f"/{ISO_NAMES[name]}.;1",
                   rr_name=name, joliet_path=f"/{name}")
    iso.write(str(path))
    iso.close()


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
