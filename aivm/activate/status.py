"""Declared against live: what `aivm status` reports for one VM.

Unprivileged by default; the firewall (nft) is only probed with `--sudo`, as a
read-only root step shown before it runs (`firewall.network_probe`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from aivm.activate import disk, egress, firewall, live
from aivm.config.schema import Network, Vm
from aivm.config.to_graph import domain_name, mac_address, network_name, nft_name
from aivm.graph.scheduler import NodeState
from aivm.graph.store import Store
from aivm.guest import ssh
from aivm.recipes.domain_xml import DomainXml, read_resolved


@dataclass(frozen=True)
class VmStatus:
    vm: str
    stale_nodes: tuple[str, ...]
    network: str
    network_state: str          # missing | stopped | active
    network_current: bool
    firewall: str               # disabled | not checked | applied | outdated | missing | ...
    domain_state: str           # missing | stopped | running
    domain_current: bool
    drift: tuple[str, ...]
    disk: str
    disk_exists: bool
    ip: str | None
    ssh: str                    # reachable | unreachable | not checked
    console_log: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    egress: str = "open"        # the network's egress policy (aivm/activate/egress.py)
    start: str = ""             # how its next start goes: restore | boot-and-save | boot, why
    ports: tuple[Mapping[str, Any], ...] = ()   # published ports and their state (guest/ports.py)
    host: str = "local"         # the host it runs on: "local" or user@server (aivm/remote)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def vm_status(conn: live.Conn, vm: Vm, network: Network, states: Mapping[str, NodeState], *,
              nft: firewall.Live | None, probe_ssh: bool) -> VmStatus:
    """`nft`: what `firewall.network_probe` saw (with `--sudo`), None when not asked."""
    dom_node = states[domain_name(vm.name)]
    net_node = states[network_name(network.name)]
    dom = live.read_domain(conn, vm.name)
    net = live.read_network(conn, network.name)
    ip = live.lease_ip(conn, network.name, mac_address(vm.name)) if dom.active else None
    path = disk.disk_path(vm.name)
    from aivm.remote.placement import label

    where, disk_at, disk_exists = label(vm), str(path), path.exists()
    if vm.host:  # the disk lies on the VM's host (aivm/remote/status.py)
        from aivm.remote.status import remote_disk

        disk_at, disk_exists = remote_disk(vm)
    return VmStatus(
        vm=vm.name, stale_nodes=tuple(n for n, s in states.items() if not s.cached),
        network=network.name, network_state=_state(net.exists, net.active, "active"),
        network_current=net.key == net_node.key,
        firewall=_firewall(network, states, nft),
        domain_state=_state(dom.exists, dom.active, "running"),
        domain_current=dom.key == dom_node.key, drift=_drift(dom, dom_node),
        disk=disk_at, disk_exists=disk_exists, ip=ip, host=where,
        ssh=_ssh(vm, ip) if probe_ssh else "not checked",
        console_log=disk_at.rsplit("/", 1)[0] + "/console.log",
        egress=egress.summary(network, states),
        ports=_ports(vm))


def _ports(vm: Vm) -> tuple[Mapping[str, Any], ...]:
    from aivm.guest import ports

    return tuple(ports.status(vm))


def start_path(conn: live.Conn, store: Store, vm: Vm, states: Mapping[str, NodeState], *,
               enabled: bool) -> str:
    """How `aivm up` / `--recreate` starts the VM next (aivm/activate/snapshot.py)."""
    from aivm.activate import snapshot

    xml = states[domain_name(vm.name)].path / DomainXml.OUTPUT
    if not xml.is_file():
        return "not built yet: `aivm up` builds the domain first"
    return snapshot.choose(conn, store, vm, read_resolved(xml), enabled=enabled).line


def _state(exists: bool, active: bool, on: str) -> str:
    return on if active else "stopped" if exists else "missing"


def _firewall(network: Network, states: Mapping[str, NodeState],
              nft: firewall.Live | None) -> str:
    if nft_name(network.name) not in states:
        return "disabled" + (", but its nft table is still applied" if nft and nft.exists else "")
    if nft is None:
        return "not checked (use --sudo)"
    if nft.state is firewall.State.PRESENT:
        return "applied, not compared (its ruleset is not built: `aivm up` builds it)"
    return str(nft.state)


def _drift(dom: live.DomainState, node: NodeState) -> tuple[str, ...]:
    if not dom.exists or dom.key == node.key:
        return ()
    xml = node.path / DomainXml.OUTPUT
    if not xml.is_file():
        return ("the config changed since the last build: `aivm up` rebuilds and applies it",)
    return tuple(d.line for d in live.drift(live.parse_domain(read_resolved(xml)), dom)) or (
        "the definition differs from the store (same resources)",)


def _ssh(vm: Vm, ip: str | None) -> str:
    if not ip:
        return "unreachable"
    from aivm.activate.up import target

    return "reachable" if ssh.check(target(vm, ip), timeout=10) else "unreachable"


def render(s: VmStatus, *, detail: bool) -> str:
    ok = "up to date"
    lines = [
        f"VM {s.vm}",
        f"  host:     {s.host}",
        f"  graph:    {len(s.stale_nodes)} stale node(s)"
        + (f": {', '.join(s.stale_nodes)}" if s.stale_nodes else ""),
        f"  network:  {s.network} {s.network_state}"
        + ("" if s.network_state == "missing" else f", {ok if s.network_current else 'outdated'}"),
        f"  firewall: {s.firewall}",
        f"  egress:   {s.egress}",
        f"  domain:   {s.domain_state}"
        + ("" if s.domain_state == "missing" else f", {ok if s.domain_current else 'drifted'}"),
    ]
    lines += [f"    drift: {d}" for d in s.drift]
    lines += [f"  disk:     {s.disk}{'' if s.disk_exists else ' (missing)'}",
              f"  ip:       {s.ip or '-'}", f"  ssh:      {s.ssh}"]
    lines += [f"  port:     {p['address']}:{p['host']} -> guest {p['guest']} ({p['state']}"
              f"{', run time' if p['source'] == 'runtime' else ''})" for p in s.ports]
    if detail:
        lines.append(f"  console:  {s.console_log}")
        if s.start:
            lines.append(f"  start:    {s.start}")
    return "\n".join(lines)
