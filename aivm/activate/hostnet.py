"""Host-side checks of a guest network, made when a plan is built (`aivm up`, `host fw apply`).

The config and the graph stay host-independent: lint refuses `lo` as a bridge
and subnets outside the private ranges (aivm/recipes/values.py). What only the
host can tell is checked here, against what `ip -j link/addr/route` prints (in
AIVM_NETNS when set, where the guest network lives; no root needed without it):

- the bridge: an existing interface of that name must be the network's own
  bridge (the bridge of the libvirt network of that name). Anything else (eth0,
  a VPN device, another network's bridge) would get the guest firewall while
  the guests' real bridge went unfiltered.
- the subnet: no address on another interface and no route through another
  device may overlap it, or the host would send that traffic to the guests
  (or the guests' to it). The network's own bridge and its route are left out.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from aivm.activate import live
from aivm.config.schema import Network
from aivm.errors import AivmError
from aivm.run import Cmd, run


@dataclass(frozen=True)
class HostNets:
    """The host's interfaces, IPv4 addresses (interface, address) and routes (device, dst)."""

    links: tuple[str, ...] = ()
    addrs: tuple[tuple[str, ipaddress.IPv4Interface], ...] = ()
    routes: tuple[tuple[str, ipaddress.IPv4Network], ...] = ()


def read() -> HostNets:
    """What `ip -j` prints about links, addresses and the main routing table."""
    links = tuple(str(link["ifname"]) for link in _ip("link"))
    addrs = tuple((str(link["ifname"]), ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}"))
                  for link in _ip("-4", "addr") for a in link.get("addr_info", ())
                  if a.get("family") == "inet")
    routes = tuple((str(r.get("dev", "")), ipaddress.IPv4Network(_dst(r["dst"])))
                   for r in _ip("-4", "route") if r.get("dst") not in (None, "default"))
    return HostNets(links, addrs, routes)


def _ip(*args: str) -> list[dict[str, Any]]:
    res = run(Cmd.of("ip", "-j", *args, meaning=f"read the host's {args[-1]}s", in_netns=True),
              timeout=30)
    data = json.loads(res.stdout or "[]")
    return [d for d in data if isinstance(d, dict)]


def _dst(dst: str) -> str:
    return dst if "/" in dst else f"{dst}/32"


def libvirt_bridge(conn: live.Conn, name: str) -> str | None:
    """The bridge of the libvirt network `name`; None when it is not defined."""
    net = live.lookup_network(conn, name)
    if net is None:
        return None
    bridge = ElementTree.fromstring(net.XMLDesc(0)).find("bridge")
    return None if bridge is None else bridge.get("name")


def problems(net: Network, host: HostNets, own_bridge: str | None) -> list[AivmError]:
    """Why the host cannot take `net`: its bridge name or its subnet is someone else's.
    `own_bridge`: the bridge libvirt's network of that name has now (left out of the subnet
    checks even when the config renames it: redefining the network removes its route)."""
    own = own_bridge
    out = []
    if net.bridge in host.links and net.bridge != own:
        out.append(AivmError(
            f"network {net.name}: bridge {net.bridge!r} is an existing interface of this host "
            "that is not the network's own bridge", reason="bridge-in-use",
            hint="the firewall would filter that interface and leave the guests unfiltered: "
                 "set bridge to a name no interface has, e.g. virbr-aivm"))
    subnet = ipaddress.IPv4Network(net.subnet)
    for dev, iface in host.addrs:
        if dev != own and iface.network.overlaps(subnet):
            out.append(_overlap(net, f"address {iface} of interface {dev}"))
    for dev, dst in host.routes:
        if dev != own and dst.overlaps(subnet):
            out.append(_overlap(net, f"route {dst} via {dev or 'no device'}"))
    return out


def _overlap(net: Network, what: str) -> AivmError:
    return AivmError(f"network {net.name}: subnet {net.subnet} overlaps the host's {what}",
                     hint="pick a subnet the host does not use (see `ip route`), e.g. another "
                          "10.N.0.0/24, in the config's [[networks]] entry",
                     reason="subnet-in-use")


def check(conn: live.Conn, net: Network) -> None:
    """Refuse (the first problem, counting the rest) before a plan activates `net`."""
    found = problems(net, read(), libvirt_bridge(conn, net.name))
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise AivmError(first.message + more, hint=first.hint, reason=first.reason)


def check_firewall(conn: live.Conn, net: Network, *, dry_run: bool = False) -> str:
    """`host fw apply`: the libvirt network must exist with the configured bridge (the
    ruleset filters that bridge); then the same checks as `up`. Returns the preview note
    (a dry run notes a missing network instead of refusing)."""
    bridge = libvirt_bridge(conn, net.name)
    if bridge != net.bridge:
        state = "is not defined" if bridge is None else f"uses bridge {bridge!r}"
        error = AivmError(f"network {net.name} {state}, and its firewall filters bridge "
                          f"{net.bridge!r}", reason="network-missing",
                          hint=f"create it first: aivm host net create {net.name} (or aivm up)")
        if not dry_run:
            raise error
        check(conn, net)
        return f"{error.message}: a real run refuses ({error.hint})"
    check(conn, net)
    return (f"firewall of network {net.name}: filters guest bridge {net.bridge} "
            f"(libvirt network {net.name}, subnet {net.subnet})")
