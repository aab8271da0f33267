"""The node kinds that make a real VM, one module per kind.

`REGISTRY.recipe(kind)` returns the recipe object of a kind; its module is
imported on first use, so importing this package costs nothing. Templates
live in `templates/`; `REGISTRY.template_path(name)` finds them for the
scheduler, which hashes them into each node's key.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from aivm.errors import GraphError
from aivm.recipes.render import template_path

# kind -> (module, class)
KINDS: dict[str, tuple[str, str]] = {
    "fetch": ("aivm.recipes.fetch", "Fetch"),
    "local-image": ("aivm.recipes.local_image", "LocalImage"),
    "debootstrap": ("aivm.recipes.debootstrap", "Debootstrap"),
    "debootstrap-disk": ("aivm.recipes.debootstrap", "DebootstrapDisk"),
    "overlay": ("aivm.recipes.overlay", "Overlay"),
    "seed-iso": ("aivm.recipes.seed_iso", "SeedIso"),
    "network-xml": ("aivm.recipes.network_xml", "NetworkXml"),
    "nft-ruleset": ("aivm.recipes.nft_ruleset", "NftRuleset"),
    "domain-xml": ("aivm.recipes.domain_xml", "DomainXml"),
    "egress-ruleset": ("aivm.recipes.egress", "EgressRuleset"),
    "provision": ("aivm.recipes.provision", "Provision"),
}


class Registry:
    def __init__(self) -> None:
        self._made: dict[str, Any] = {}

    def recipe(self, kind: str) -> Any:
        if kind not in self._made:
            if kind not in KINDS:
                raise GraphError(f"unknown node kind {kind!r}",
                                 hint="known kinds: " + ", ".join(sorted(KINDS)),
                                 reason="unknown-kind")
            module, cls = KINDS[kind]
            self._made[kind] = getattr(importlib.import_module(module), cls)()
        return self._made[kind]

    def template_path(self, name: str) -> Path:
        return template_path(name)

    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(KINDS))


REGISTRY = Registry()

__all__ = ["KINDS", "REGISTRY", "Registry"]
