"""A second namespace standing for a host on the LAN, for firewall tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.e2e.netns import netns_add, netns_delete, ns_exec, ns_pids, start_listener, stop_pid

if TYPE_CHECKING:
    from tests.e2e.harness import RealStack


@dataclass(frozen=True)
class LanHost:
    """A second namespace joined to the stack's by a veth pair, with a TCP listener."""

    netns: str
    address: str          # the LAN host's address (listener), e.g. 192.168.213.2
    gateway: str          # the stack namespace's end of the veth
    port: int
    listener_pid: int


@contextlib.contextmanager
def lan_host(stack: RealStack, *, subnet_prefix: str = "192.168.213", port: int = 8099,
             veth: str = "aivmlan") -> Iterator[LanHost]:
    """A "host on the LAN" reachable from the stack namespace, removed on exit.

    The veth pair is created inside the stack namespace, so no link ever
    appears in the main namespace. Guests reach it through libvirt's NAT.
    """
    name = f"{stack.netns}-lan"
    host = LanHost(name, f"{subnet_prefix}.2", f"{subnet_prefix}.1", port, 0)
    try:
        netns_add(name)
        _join_lan(stack, host, veth)
        pid = start_listener(name, "0.0.0.0", port, stack.work / f"{name}-listener.log")
        yield LanHost(host.netns, host.address, host.gateway, port, pid)
    finally:
        for pid in ns_pids(name):
            stop_pid(pid, wait_s=5.0)
        netns_delete(name)


def _join_lan(stack: RealStack, host: LanHost, veth: str) -> None:
    stack.ns_run(["ip", "link", "add", f"{veth}0", "type", "veth", "peer", "name", f"{veth}1",
                  "netns", host.netns], meaning="veth pair to the LAN host namespace")
    stack.ns_run(["ip", "addr", "add", f"{host.gateway}/24", "dev", f"{veth}0"])
    stack.ns_run(["ip", "link", "set", f"{veth}0", "up"])
    ns_exec(host.netns, "ip", "addr", "add", f"{host.address}/24", "dev", f"{veth}1")
    ns_exec(host.netns, "ip", "link", "set", f"{veth}1", "up")
    ns_exec(host.netns, "ip", "route", "add", "default", "via", host.gateway)
