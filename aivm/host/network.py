"""`aivm host net` and `aivm host fw`: one declared network and its firewall, by name.

The network's nodes (`net.<name>`, `net.<name>.nft`) are built from the config
alone, without any VM; activation reuses aivm.activate.live's network plans
and aivm.activate.firewall's ruleset plans, so `aivm up` and these commands
agree on what "up to date" means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aivm.activate import firewall, live
from aivm.activate.plan import Plan
from aivm.config.schema import Config, Network
from aivm.errors import AivmError, ConfigError
from aivm.graph.graph import Graph
from aivm.graph.scheduler import NodeState
from aivm.recipes.nft_ruleset import table_name


def chosen(cfg: Config, name: str | None) -> Network:
    """The named network, else the active (or only) VM's, else `[defaults] network`."""
    if not name:
        from aivm.config.resolve import resolve_vm

        try:
            name = resolve_vm(cfg, None, Path.cwd()).network
        except ConfigError:
            name = cfg.defaults.network
    return cfg.require_network(name)


def node_names(net: Network) -> tuple[str, ...]:
    nft = (f"net.{net.name}.nft",) if net.firewall.enabled else ()
    return (f"net.{net.name}",) + nft


def graph(net: Network) -> Graph:
    from aivm.config.to_graph import network_node, nft_node
    from aivm.host.facts import detect

    return Graph([network_node(net, detect())] + ([nft_node(net)] if net.firewall.enabled else []))


def users(conn: live.Conn, name: str) -> tuple[tuple[str, bool], ...]:
    """(VM, running) for every defined domain with an interface on network `name`."""
    found = []
    for dom in conn.listAllDomains(0):
        state = live.parse_domain(dom.XMLDesc(0))
        if name in state.networks:
            found.append((dom.name(), bool(dom.isActive())))
    return tuple(sorted(found))


def destroy_plan(conn: live.Conn, name: str, *, force: bool) -> Plan:
    using = users(conn, name)
    if using and not force:
        names = ", ".join(f"{vm} ({'running' if on else 'stopped'})" for vm, on in using)
        raise AivmError(f"network {name} is used by {names}",
                        hint="destroy those VMs first (`aivm destroy VM`), or pass --force "
                             "(running VMs lose their link; stopped ones cannot start "
                             "until the network exists again)", reason="network-in-use")
    state = live.read_network(conn, name)
    if state.exists and state.key is None:
        raise AivmError(f"network {name} exists in libvirt but was not defined by aivm",
                        hint="remove it with virsh if it is really unused", reason="not-aivm-owned")
    return live.remove_network_plan(conn, name)


def require_firewall(net: Network) -> None:
    if not net.firewall.enabled:
        raise AivmError(f"the firewall of network {net.name} is disabled in the config",
                        hint=f"set enabled = true under [networks.firewall] of {net.name!r}",
                        reason="firewall-disabled")


def ruleset_node(states: Mapping[str, NodeState], net: Network) -> NodeState:
    require_firewall(net)
    return states[f"net.{net.name}.nft"]


def probe(states: Mapping[str, NodeState], net: Network) -> firewall.Probe:
    """Phase one of `host fw ...`: the read-only root probe of the network's table."""
    return firewall.network_probe(net.name, states)


def apply_plan(states: Mapping[str, NodeState], net: Network, nft: firewall.Live) -> Plan:
    node = ruleset_node(states, net)
    return firewall.apply_plan(net.name, table_name(net.name), node.path / "ruleset.nft", nft)


def remove_plan(net: Network, nft: firewall.Live) -> Plan:
    return firewall.remove_plan(net.name, table_name(net.name), nft, "asked to remove it")


@dataclass(frozen=True)
class NetStatus:
    name: str
    state: str            # missing | stopped | active
    current: bool         # the live definition is the store's
    owned: bool           # defined by aivm (carries a node key)
    subnet: str
    bridge: str
    users: tuple[tuple[str, bool], ...]

    def render(self) -> str:
        lines = [f"network {self.name}: {self.state}" + self._freshness(),
                 f"  subnet {self.subnet} on bridge {self.bridge}"]
        lines += [f"  used by {vm} ({'running' if on else 'stopped'})" for vm, on in self.users]
        return "\n".join(lines)

    def _freshness(self) -> str:
        if self.state == "missing":
            return " (`aivm host net create` creates it)"
        if not self.owned:
            return ", not defined by aivm"
        if self.current:
            return ", up to date"
        return ", outdated (`aivm host net create` redefines it)"


def net_status(conn: live.Conn, states: Mapping[str, NodeState], net: Network) -> NetStatus:
    state = live.read_network(conn, net.name)
    word = "active" if state.active else "stopped" if state.exists else "missing"
    return NetStatus(net.name, word, state.key == states[f"net.{net.name}"].key,
                     state.key is not None, net.subnet, net.bridge, users(conn, net.name))


def fw_status(states: Mapping[str, NodeState], net: Network, nft: firewall.Live) -> str:
    """One line from what the probe saw (`probe`): applied and current, outdated, missing."""
    table = table_name(net.name)
    head = f"firewall of network {net.name}:"
    if f"net.{net.name}.nft" not in states:
        tail = f", but nft table inet {table} is still applied (`aivm host fw remove`)"
        return f"{head} disabled in the config{tail if nft.exists else ''}"
    if nft.state is firewall.State.UNCHECKED:
        return f"{head} {firewall.DRY_RUN}"
    if not nft.exists:
        return f"{head} not applied (`aivm host fw apply {net.name}`)"
    if nft.state is firewall.State.PRESENT:
        return (f"{head} nft table inet {table} applied; the config's ruleset is not built, so "
                f"it was not compared (`aivm host fw apply {net.name}`)")
    if nft.state is firewall.State.CURRENT:
        return f"{head} nft table inet {table} applied, up to date"
    return (f"{head} nft table inet {table} applied, outdated: it differs from the store's "
            f"ruleset (`aivm host fw apply {net.name}`)")
