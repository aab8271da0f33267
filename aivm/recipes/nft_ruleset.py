"""nft-ruleset: one `table inet aivm_<network>` that fences the guests of a network.

Input hook, from the guest bridge: DHCP, DNS and ping to the gateway, the
`allow_tcp_ports` / `allow_udp_ports` on the gateway address only, the
`allow_lan_tcp` / `allow_lan_udp` endpoints that are the host's own
addresses, and nothing else toward the host. Forward hook, from the guest
bridge: the `allow_lan_*` endpoints (one address or range, one port each),
then drop private, loopback, link-local, CGNAT, multicast and reserved ranges
(plus configured extras); accept the rest (the internet through libvirt's
NAT). Cloud metadata addresses are dropped first in both hooks, whatever is
allowed. The file opens
with `table ... {}` + `delete table ...`, so one `nft -f` replaces the table
atomically on nft 1.0.6, which has no `destroy`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aivm.graph.node import BuildContext, Node
from aivm.recipes import render, values
from aivm.recipes.base import RecipeBase

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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
# Cloud instance metadata: dropped before any allow rule, and no allow_lan entry may hold it.
METADATA = ("169.254.169.254", "fd00:ec2::254")
# Inside the blocked ranges but never a LAN service: allow_lan refuses them.
NOT_LAN = ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4",
           "::/128", "::1/128", "::ffff:0:0/96", "ff00::/8")
LAN_SHAPE = ("an address or CIDR range of your LAN and one port, e.g. \"192.168.1.10:5432\", "
             "\"10.1.0.0/24:443\" or \"[fd00::5]:22\"")


class NftRuleset(RecipeBase):
    kind: ClassVar[str] = "nft-ruleset"
    OUTPUT: ClassVar[str] = "ruleset.nft"
    version: ClassVar[int] = 2
    templates: ClassVar[tuple[str, ...]] = ("ruleset.nft.j2",)
    defaults: ClassVar[Mapping[str, Any]] = {
        "allow_tcp_ports": (), "allow_udp_ports": (), "extra_blocked": (),
        "allow_lan_tcp": (), "allow_lan_udp": ()}
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
            "lan": lan_rules(p["allow_lan_tcp"], "tcp") + lan_rules(p["allow_lan_udp"], "udp"),
            "metadata4": [a for a in METADATA if ":" not in a],
            "metadata6": [a for a in METADATA if ":" in a],
            "blocked4": collapse(BLOCKED_V4, (n for n in extra if n.version == 4)),
            "blocked6": collapse(BLOCKED_V6, (n for n in extra if n.version == 6)),
        }

    def build(self, ctx: BuildContext, into: Path) -> None:
        render.write(into, self.OUTPUT, "ruleset.nft.j2", key=ctx.key, **self.check(ctx.node))


def table_name(network: str) -> str:
    """The nft table of a network: `aivm_` + the name with every other character as '_'."""
    return "aivm_" + re.sub(r"[^A-Za-z0-9_]", "_", values.name(network, "network name"))


@dataclass(frozen=True)
class LanRule:
    """`allow_lan_<proto>` as one nft rule: a destination (address or range) and its ports."""

    family: str            # ip | ip6
    dest: str
    proto: str             # tcp | udp
    ports: tuple[int, ...]


def lan_endpoint(value: Any, what: str) -> tuple[IPNetwork, int]:
    """"ADDRESS[/PREFIX]:PORT" (IPv6 in brackets) inside the blocked LAN ranges."""
    text = value if isinstance(value, str) else ""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # IPv6 without brackets: the port is ambiguous
    try:
        net = ipaddress.ip_network(host, strict=True) if sep else None
        port = int(port_text) if port_text.isdigit() else 0
    except ValueError:
        net = None
    if net is None or not 1 <= port <= 65535:
        raise values.invalid(what, value, LAN_SHAPE)
    _require_lan(net, value, what)
    return net, port


def _require_lan(net: IPNetwork, value: Any, what: str) -> None:
    blocked = [ipaddress.ip_network(n) for n in BLOCKED_V4 + BLOCKED_V6]
    inside = any(net.version == b.version and net.subnet_of(b) for b in blocked)  # type: ignore[arg-type]
    if not inside:
        raise values.invalid(what, value, "not a LAN address: the guest already reaches it",
                             "allow_lan_* opens private, link-local or CGNAT addresses only")
    if any(net.overlaps(ipaddress.ip_network(n)) for n in NOT_LAN if
           ipaddress.ip_network(n).version == net.version):
        raise values.invalid(what, value, "loopback, multicast or reserved: never a LAN service")
    if any(ipaddress.ip_address(m) in net for m in METADATA
           if ipaddress.ip_address(m).version == net.version):
        raise values.invalid(what, value, "holds a cloud metadata address, which is always "
                             "dropped", "name the LAN hosts you mean, not the whole range")


def lan_rules(items: Any, proto: str) -> list[LanRule]:
    """One rule per destination, ports merged, in a stable order."""
    what = f"allow_lan_{proto}"
    by_dest: dict[IPNetwork, set[int]] = {}
    if isinstance(items, str) or not isinstance(items, list | tuple):
        raise values.invalid(what, items, "a list of \"ADDRESS:PORT\" strings")
    for item in items:
        net, port = lan_endpoint(item, what)
        by_dest.setdefault(net, set()).add(port)
    return [LanRule("ip" if n.version == 4 else "ip6", _dest(n), proto, tuple(sorted(ports)))
            for n, ports in sorted(by_dest.items(), key=lambda kv: (kv[0].version, kv[0]))]


def _dest(net: IPNetwork) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def collapse(base: Iterable[str], extra: Iterable[Any]) -> list[str]:
    """Merge ranges so no two overlap (an nft interval set refuses overlaps)."""
    nets = [ipaddress.ip_network(n) for n in base] + list(extra)
    return [str(n) for n in ipaddress.collapse_addresses(nets)]
