"""nft-ruleset: one `table inet aivm_<network>` that fences the guests of a network.

Input hook, from the guest bridge: DHCP, DNS and ping to the gateway, the
configured allow ports, and nothing else toward the host. Forward hook, from
the guest bridge: drop traffic to private, loopback, link-local, CGNAT,
multicast and reserved ranges (plus configured extras) except the allow
ports; accept the rest (the internet through libvirt's NAT). The file opens
with `table ... {}` + `delete table ...`, so one `nft -f` replaces the table
atomically on nft 1.0.6, which has no `destroy`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from aivm.graph.node import BuildContext, Node
from aivm.recipes import render, values
from aivm.recipes.base import RecipeBase

BLOCKED_V4 = (
    "0.0.0.0/8",        # "this network"
    "10.0.0.0/8",       # private
    "100.64.0.0/10",    # CGNAT
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local
    "172.16.0.0/12",    # private
    "192.0.0.0/24",     # IETF protocol assignments
    "192.0.2.0/24",     # TEST-NET-1
    "192.168.0.0/16",   # private
    "198.18.0.0/15",    # benchmarking
    "198.51.100.0/24",  # TEST-NET-2
    "203.0.113.0/24",   # TEST-NET-3
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved, broadcast
)
BLOCKED_V6 = (
    "::/128", "::1/128",  # unspecified, loopback
    "::ffff:0:0/96",      # v4-mapped
    "64:ff9b:1::/48",     # local-use NAT64
    "100::/64",           # discard
    "2001:db8::/32",      # documentation
    "fc00::/7",           # unique local
    "fe80::/10",          # link-local
    "ff00::/8",           # multicast
)


class NftRuleset(RecipeBase):
    kind: ClassVar[str] = "nft-ruleset"
    version: ClassVar[int] = 1
    templates: ClassVar[tuple[str, ...]] = ("ruleset.nft.j2",)
    defaults: ClassVar[Mapping[str, Any]] = {
        "allow_tcp_ports": (), "allow_udp_ports": (), "extra_blocked": ()}
    required: ClassVar[tuple[str, ...]] = ("network", "bridge", "gateway")

    def check(self, node: Node) -> dict[str, Any]:
        p = super().check(node)
        extra = values.networks(p["extra_blocked"], "extra_blocked")
        return {
            "network": values.name(p["network"], "network name"),
            "table": table_name(p["network"]),
            "bridge": values.bridge(p["bridge"]),
            "gateway": str(values.ipv4(p["gateway"], "gateway")),
            "tcp_ports": values.ports(p["allow_tcp_ports"], "allow_tcp_ports"),
            "udp_ports": values.ports(p["allow_udp_ports"], "allow_udp_ports"),
            "blocked4": collapse(BLOCKED_V4, (n for n in extra if n.version == 4)),
            "blocked6": collapse(BLOCKED_V6, (n for n in extra if n.version == 6)),
        }

    def build(self, ctx: BuildContext, into: Path) -> None:
        render.write(into, "ruleset.nft", "ruleset.nft.j2", key=ctx.key, **self.check(ctx.node))


def table_name(network: str) -> str:
    """The nft table of a network: `aivm_` + the name with every other character as '_'."""
    return "aivm_" + re.sub(r"[^A-Za-z0-9_]", "_", values.name(network, "network name"))


def collapse(base: Iterable[str], extra: Iterable[Any]) -> list[str]:
    """Merge ranges so no two overlap (an nft interval set refuses overlaps)."""
    nets = [ipaddress.ip_network(n) for n in base] + list(extra)
    return [str(n) for n in ipaddress.collapse_addresses(nets)]
