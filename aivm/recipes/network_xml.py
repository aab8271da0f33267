"""network-xml: a libvirt NAT network with DHCP, its node key in <metadata>.

With a filtering egress policy (`egress = "filtered"`: allowlist or offline)
the network's dnsmasq gets options through libvirt's `<dnsmasq:options>`: no
resolv.conf, answers kept by guests 300 s at most, the servers-file of allowed
names (reread on SIGHUP, so the XML stays the same when the allowlist changes
and the network is never restarted for it), NXDOMAIN for every other name, and
every upstream answer added to the egress table's sets (recipes/egress.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from aivm.graph.node import BuildContext, Node
from aivm.recipes import render, values
from aivm.recipes.base import XMLNS, RecipeBase


class NetworkXml(RecipeBase):
    kind: ClassVar[str] = "network-xml"
    OUTPUT: ClassVar[str] = "network.xml"
    version: ClassVar[int] = 1
    templates: ClassVar[tuple[str, ...]] = ("network.xml.j2",)
    defaults: ClassVar[Mapping[str, Any]] = {
        "egress": "open", "servers_file": "", "dns_log": "", "egress_table": ""}
    required: ClassVar[tuple[str, ...]] = (
        "name", "bridge", "subnet", "gateway", "dhcp_start", "dhcp_end")

    def check(self, node: Node) -> dict[str, Any]:
        p = super().check(node)
        return {**lan(p), **egress_options(p)}

    def build(self, ctx: BuildContext, into: Path) -> None:
        render.write(into, self.OUTPUT, "network.xml.j2", key=ctx.key, xmlns=XMLNS,
                     **self.check(ctx.node))


def egress_options(p: Mapping[str, Any]) -> dict[str, Any]:
    """The dnsmasq facts of the egress mode: nothing for "open"."""
    mode = values.one_of(p["egress"], ("open", "filtered"), "egress")
    if mode == "open":
        return {"egress": mode}
    return {"egress": mode, "servers_file": values.abs_path(p["servers_file"], "servers_file"),
            "dns_log": values.abs_path(p["dns_log"], "dns_log"),
            "egress_table": values.name(p["egress_table"], "egress_table")}


def lan(p: Mapping[str, Any]) -> dict[str, Any]:
    """The checked facts of a guest LAN: gateway and DHCP range inside an IPv4 subnet."""
    subnet = values.guest_subnet(p["subnet"], "subnet")
    gateway = values.ipv4(p["gateway"], "gateway")
    start = values.ipv4(p["dhcp_start"], "dhcp_start")
    end = values.ipv4(p["dhcp_end"], "dhcp_end")
    for what, addr in (("gateway", gateway), ("dhcp_start", start), ("dhcp_end", end)):
        if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
            raise values.invalid(what, str(addr), f"a host address inside {subnet}")
    if not start <= end or start <= gateway <= end:
        raise values.invalid("dhcp range", f"{start}-{end}",
                             "start <= end, and the gateway outside the range")
    return {"name": values.name(p["name"], "network name"),
            "bridge": values.bridge(p["bridge"]), "subnet": str(subnet),
            "netmask": str(subnet.netmask), "gateway": str(gateway),
            "dhcp_start": str(start), "dhcp_end": str(end)}
