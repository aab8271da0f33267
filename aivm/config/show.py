"""The effective config as TOML: defaults merged in, implicit network and image spelled out.

`aivm config show VM` prints one VM's effective settings; `--resolved` adds
what it uses (network, image, attachments) and the host uid/gid it will get.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aivm.config import schema
from aivm.config.resolve import with_host_ids
from aivm.config.write import to_toml

T = TypeVar("T")


def resolved(cfg: schema.Config) -> str:
    """The whole config with every VM resolved and every referenced default made explicit."""
    vms = tuple(with_host_ids(v) for v in cfg.vms)
    data: dict[str, Any] = {
        "schema_version": cfg.schema_version,
        "active_vm": cfg.active_vm,
        "behavior": to_toml(cfg.behavior),
        "vms": [to_toml(v) for v in vms],
        "networks": [to_toml(n) for n in used_networks(cfg, vms)],
        "images": [to_toml(i) for i in used_images(cfg, vms)],
        "attachments": [to_toml(a) for a in cfg.attachments],
        "sync": to_toml(cfg.sync),
        "store": to_toml(cfg.store),
    }
    return dumps(data)


def vm(cfg: schema.Config, chosen: schema.Vm, *, full: bool) -> str:
    """One VM's effective settings; with `full`, also its network, image and attachments."""
    if not full:
        return dumps({"vms": [to_toml(chosen)]})
    chosen = with_host_ids(chosen)
    return dumps({
        "vms": [to_toml(chosen)],
        "networks": [to_toml(n) for n in used_networks(cfg, (chosen,))],
        "images": [to_toml(i) for i in used_images(cfg, (chosen,))],
        "attachments": [to_toml(a) for a in cfg.attachments if a.vm == chosen.name],
    })


def used_networks(cfg: schema.Config, vms: tuple[schema.Vm, ...]) -> list[schema.Network]:
    """Defined networks, plus the built-in default when a VM uses it without defining it."""
    return _with_used(cfg.networks, [cfg.network(v.network) for v in vms])


def used_images(cfg: schema.Config, vms: tuple[schema.Vm, ...]) -> list[schema.Image]:
    return _with_used(cfg.images, [cfg.image(v.image) for v in vms])


def _with_used(defined: tuple[T, ...], used: list[T | None]) -> list[T]:
    out = list(defined)
    out += [u for u in dict.fromkeys(used) if u is not None and u not in out]
    return out


def dumps(data: dict[str, Any]) -> str:
    import tomlkit

    return tomlkit.dumps({k: v for k, v in data.items() if v != []})
