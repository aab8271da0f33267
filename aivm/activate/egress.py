"""A network's egress policy, live: apply it without restarting anything, read its deny log.

Applying the `net.<network>.egress` node is one step of root commands:
`nft -f` of its table (which keeps the addresses dnsmasq learned), a flush of
those learned sets when names were removed (so a denied name stops working at
once; open connections survive through conntrack), the servers-file
installed where the network XML points dnsmasq, SIGHUP to the network's
dnsmasq (it rereads only the servers-file; the network XML never changes
for an allowlist edit, so libvirt never restarts the network), and a record
of what was applied. "Up to date" needs no root: the record holds the node
key and this boot's id (nft tables do not survive a reboot; the record does),
and the installed servers-file is world-readable.

The deny log is what the table's `denied4`/`denied6` sets counted (address,
protocol, port, packets, last seen) plus the names the network's dnsmasq
answered NXDOMAIN for (its query log); reading both needs root, so it is one
read-only step shown before it runs.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aivm import fsutil
from aivm.activate import plan as plans
from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.config.schema import Network
from aivm.errors import AivmError
from aivm.graph.scheduler import NodeState
from aivm.recipes import egress as rules
from aivm.run import Cmd, Result

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
LOG_LINES = 20000
_SERVER = re.compile(r"^server=/([^/]+)/", re.M)


def node_name(network: str) -> str:
    from aivm.config.to_graph import egress_name

    return egress_name(network)


def record_file(network: str) -> Path:
    return rules.state_dir(network) / "applied"


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def record_text(key: str) -> str:
    return f"{key} {boot_id()} {os.environ.get('AIVM_NETNS', '')}\n"


def applied(network: str) -> str:
    try:
        return record_file(network).read_text()
    except OSError:
        return ""


def names_in(servers: str) -> set[str]:
    return set(_SERVER.findall(servers))


def installed_names(network: str) -> set[str]:
    try:
        return names_in(rules.servers_file(network).read_text())
    except OSError:
        return set()


def dnsmasq_pid(network: str, proc: Path = Path("/proc"), netns: str | None = None) -> int | None:
    """The pid of libvirt's dnsmasq for `network` (its command line names the network's
    conf file) in network namespace `netns` (default: `AIVM_NETNS`, else this process's), or None
    when the network is not running. Another libvirtd's network of the same name, in
    another namespace, is never chosen; when the namespace cannot be read (another user's
    process, without root) the command line decides."""
    wanted = f"--conf-file=/var/lib/libvirt/dnsmasq/{network}.conf".encode()
    here = fsutil.identity(_netns_path(proc, netns))
    unsure: list[int] = []
    for entry in sorted(proc.iterdir(), key=lambda e: e.name):
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not (argv and argv[0].endswith(b"dnsmasq") and wanted in argv):
            continue
        theirs = fsutil.identity(entry / "ns" / "net")
        if theirs is not None and theirs == here:
            return int(entry.name)
        if theirs is None or here is None:
            unsure.append(int(entry.name))
    return unsure[0] if unsure else None


def _netns_path(proc: Path, netns: str | None) -> Path:
    name = os.environ.get("AIVM_NETNS", "") if netns is None else netns
    return Path("/run/netns") / name if name else proc / "self" / "ns" / "net"


# ---- applying ---------------------------------------------------------------------------------

def plan(network: str, states: Mapping[str, NodeState], *,
         reload_dns: bool) -> Plan:
    """Make the live egress policy match the config: apply the node, or remove the table.

    `reload_dns`: the network keeps running through this plan (not started or restarted
    by it), so its dnsmasq must be told to reread the servers-file.
    """
    node = states.get(node_name(network))
    if node is None:
        return remove_plan(network)
    return apply_plan(network, node.path, node.key, reload_dns=reload_dns)


def apply_plan(network: str, entry: Path, key: str, *, reload_dns: bool) -> Plan:
    table = rules.table_name(network)
    servers = (entry / rules.EgressRuleset.SERVERS).read_text()
    target = rules.servers_file(network)
    if applied(network) == record_text(key) and _read(target) == servers:
        return plans.of(f"egress policy of network {network}: up to date")
    removed = sorted(installed_names(network) - names_in(servers))
    pid = dnsmasq_pid(network) if reload_dns else None
    actions = [
        _root(f"make {target.parent}", "mkdir", "-p", "-m", "0755", str(target.parent)),
        Action.command(Cmd.of("nft", "-f", str(entry / rules.EgressRuleset.OUTPUT), root=True,
                              in_netns=True,
                              meaning=f"load nft table inet {table} (learned addresses kept)")),
    ]
    if removed:
        actions += [Action.command(Cmd.of(
            "nft", "flush", "set", "inet", table, learned, root=True, in_netns=True,
            meaning=f"forget the addresses learned so far ({', '.join(removed)} no longer "
                    "allowed; they are learned again for the names still allowed)"))
            for learned in rules.LEARNED]
    actions.append(_root("install the allowed names where the network's dnsmasq reads them",
                         "install", "-m", "0644", str(entry / rules.EgressRuleset.SERVERS),
                         str(target)))
    if pid is not None:
        actions.append(_root(f"tell the network's dnsmasq (pid {pid}) to reread them: "
                             "no network restart", "kill", "-HUP", str(pid)))
    record = record_file(network)
    actions.append(Action.command(Cmd.of("tee", str(record), root=True, stdin=record_text(key),
                                          meaning="record which policy is applied")))
    count = len(names_in(servers))
    return plans.of(Step(
        f"Apply the egress policy of network {network}",
        f"guests may reach {count} allowed name{'s' * (count != 1)} (and their subdomains), "
        "the allowed ranges, and nothing else on the internet",
        tuple(actions), Privilege.ROOT, Effect.SYSTEM_WRITE))


def remove_plan(network: str) -> Plan:
    """Open policy: remove the table if aivm applied one (the record says so)."""
    record = record_file(network)
    if not applied(network):
        return plans.of()
    table = rules.table_name(network)
    return plans.of(Step(
        f"Remove the egress policy of network {network}",
        "the policy is open: guests reach the internet through NAT (the firewall still "
        "fences the host and the LAN)",
        (Action.command(Cmd.of("sh", "-c", 'nft list table inet "$1" >/dev/null 2>&1 || exit 0; '
                               'exec nft delete table inet "$1"', "aivm-egress", table, root=True,
                               in_netns=True, meaning=f"delete nft table inet {table} if it is "
                                                      "there")),
         _root("forget the applied policy", "rm", "-f", str(record))),
        Privilege.ROOT, Effect.SYSTEM_WRITE))


def _root(meaning: str, *argv: str) -> Action:
    return Action.command(Cmd.of(*argv, root=True, meaning=meaning))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


# ---- the deny log -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Denied:
    """One denied destination: an address (proto/port) or a name refused by DNS."""

    target: str                # an address, or a domain name
    kind: str                  # "address" | "name" | "resolver"
    proto: str = ""
    port: int = 0
    count: int = 0             # packets (address) or queries (name)
    last_seen_s: int = 0       # seconds ago
    name: str = ""             # the name an address was resolved from, when known

    @property
    def allow_command(self) -> str:
        """The command that would allow it ("" for DNS to other resolvers: never allowed)."""
        if self.kind == "resolver":
            return ""
        if self.kind == "name" or self.name:
            return f"aivm net allow {self.name or self.target}"
        return f"aivm net allow {self.target}"

    def to_json(self) -> dict[str, object]:
        return {"target": self.target, "kind": self.kind, "proto": self.proto, "port": self.port,
                "count": self.count, "last_seen_s": self.last_seen_s, "name": self.name,
                "allow": self.allow_command}

    @property
    def line(self) -> str:
        what = f"{self.target} {self.proto}/{self.port}" if self.kind != "name" else self.target
        via = f" ({self.name})" if self.name else ""
        unit = "queries" if self.kind == "name" else "packets"
        fix = f"  ->  {self.allow_command}" if self.allow_command else \
            "  (DNS goes through the gateway only)"
        return f"{what}{via}: {self.count} {unit}, last {_ago(self.last_seen_s)}{fix}"


def denied_step(network: str) -> Step:
    return Step(
        f"Read the deny log of network {network}",
        "dropped destinations are counted in nft sets, refused names in dnsmasq's query log; "
        "both need root to read",
        tuple(Action.command(c) for c in denied_cmds(network)), Privilege.ROOT, Effect.READ)


def denied_cmds(network: str) -> tuple[Cmd, ...]:
    table = rules.table_name(network)
    sets = tuple(Cmd.of("nft", "-j", "list", "set", "inet", table, s, root=True, in_netns=True,
                        meaning=f"list the deny-log set {s}") for s in rules.DENIED)
    log = Cmd.of("tail", "-n", str(LOG_LINES), str(rules.dns_log(network)), root=True,
                 meaning="read the last lines of the network's DNS query log")
    return sets + (log,)


def denied(network: str, results: Mapping[Cmd, Result], *, now: float | None = None,
           year: int | None = None) -> tuple[Denied, ...]:
    """The deny log from the step's results, most recent first."""
    *set_cmds, log_cmd = denied_cmds(network)
    log = results[log_cmd].stdout if results[log_cmd].ok else ""
    names = resolved_names(log)
    found: list[Denied] = []
    for cmd in set_cmds:
        result = results[cmd]
        if not result.ok:
            if "No such file or directory" in result.stderr:
                continue  # no egress table: nothing was denied
            raise AivmError(f"nft could not list the deny log: {result.stderr.strip()}",
                            hint="see `aivm status --sudo`", reason="nft-error")
        found += [_with_name(d, names) for d in parse_set(result.stdout)]
    found += refused_names(log, time.time() if now is None else now, year)
    return tuple(sorted(found, key=lambda d: (d.last_seen_s, d.target)))


def _with_name(entry: Denied, names: Mapping[str, str]) -> Denied:
    import dataclasses

    name = names.get(entry.target, "")
    return dataclasses.replace(entry, name=name) if name and entry.kind == "address" else entry


def parse_set(text: str) -> list[Denied]:
    """Entries of `nft -j list set` of a deny-log set."""
    data = json.loads(text or "{}")
    out: list[Denied] = []
    for item in data.get("nftables", []):
        s = item.get("set")
        if not s:
            continue
        timeout = int(s.get("timeout", rules.DENY_TIMEOUT_S))
        for elem in s.get("elem", []):
            e = elem.get("elem", elem)
            addr, proto, port = e["val"]["concat"]
            packets = int((e.get("counter") or {}).get("packets", 0))
            seen = max(0, timeout - int(e.get("expires", timeout)))
            kind = "resolver" if int(port) in (53, 853) else "address"
            out.append(Denied(str(addr), kind, str(proto), int(port), packets, seen))
    return out


_LOG_LINE = re.compile(r"^(\w{3}\s+\d+ \d\d:\d\d:\d\d) dnsmasq\[\d+\]: (.*)$")
_REFUSED = re.compile(r"^config (\S+) is (NXDOMAIN|NODATA)")
_REPLY = re.compile(r"^reply (\S+) is ([0-9a-fA-F:.]+)$")


def resolved_names(log: str) -> dict[str, str]:
    """Address -> the name dnsmasq last answered it for (forwarded answers only)."""
    out: dict[str, str] = {}
    for line in log.splitlines():
        m = _LOG_LINE.match(line)
        r = _REPLY.match(m.group(2)) if m else None
        if r:
            out[r.group(2)] = r.group(1)
    return out


def refused_names(log: str, now: float, year: int | None = None) -> list[Denied]:
    """Names the network's dnsmasq refused (NXDOMAIN by policy), with counts and last time."""
    seen: dict[str, tuple[int, float]] = {}
    for line in log.splitlines():
        m = _LOG_LINE.match(line)
        r = _REFUSED.match(m.group(2)) if m else None
        if not (m and r):
            continue
        when = _stamp(m.group(1), now, year)
        count, _ = seen.get(r.group(1).lower(), (0, 0.0))
        seen[r.group(1).lower()] = (count + 1, when)
    return [Denied(name, "name", count=c, last_seen_s=max(0, int(now - t)))
            for name, (c, t) in seen.items() if _is_name(name)]


def _is_name(name: str) -> bool:
    try:
        rules.domain(name)
    except AivmError:
        return False
    return not name.endswith((".in-addr.arpa", ".ip6.arpa"))


def _stamp(text: str, now: float, year: int | None) -> float:
    """A syslog-style time (no year) as epoch seconds: this year, or last year if in future."""
    lt = time.localtime(now)
    for y in ((year,) if year else (lt.tm_year, lt.tm_year - 1)):
        try:
            t = time.mktime(time.strptime(f"{y} {' '.join(text.split())}", "%Y %b %d %H:%M:%S"))
        except ValueError:
            return now
        if t <= now + 60:
            return t
    return now


def _ago(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 5400:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


# ---- status ---------------------------------------------------------------------------------

def summary(net: Network, states: Mapping[str, NodeState]) -> str:
    """One line for `aivm status`: the policy, what it allows, and whether it is applied."""
    eg = net.egress
    if eg.policy == "open":
        return "open (the internet through NAT; `[networks.egress] policy` filters it)"
    what = "offline: nothing leaves but DNS/DHCP to the gateway"
    if eg.policy == "allowlist":
        names = rules.domains(rules.preset_domains(eg.presets) + eg.allow)
        what = (f"allowlist: {len(names)} name{'s' * (len(names) != 1)}, "
                f"{len(eg.allow_cidrs)} range{'s' * (len(eg.allow_cidrs) != 1)}")
    node = states.get(node_name(net.name))
    if node is None or not node.cached:
        return f"{what}, not built (`aivm up` applies it)"
    on = applied(net.name) == record_text(node.key)
    return f"{what}, {'applied' if on else 'not applied (`aivm up` applies it)'}"


# ---- `aivm net allow` / `aivm net deny` ---------------------------------------------------------

@dataclass(frozen=True)
class Edit:
    """A network with one allowlist change made (in memory; the CLI writes it)."""

    network: Network
    changed: bool
    note: str


def target_of(text: str) -> tuple[str, str]:
    """("cidr", "192.0.2.7/32") for an address or range, else ("name", "github.com")."""
    import ipaddress

    try:
        return "cidr", str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return "name", rules.domain(text, "domain")


def allow(net: Network, text: str) -> Edit:
    import dataclasses

    kind, target = target_of(text)
    eg = net.egress
    if kind == "cidr":
        rules.allow_cidrs([target])
        if target in eg.allow_cidrs:
            return Edit(net, False, f"{target} is already allowed on network {net.name}")
        new = dataclasses.replace(eg, allow_cidrs=eg.allow_cidrs + (target,))
    else:
        by = _allowed_by(eg, target)
        if by:
            return Edit(net, False, f"{target} is already allowed on network {net.name} ({by})")
        new = dataclasses.replace(eg, allow=eg.allow + (target,))
    return Edit(dataclasses.replace(net, egress=new), True,
                f"allowed {target} on network {net.name}{_policy_note(net)}")


def deny(net: Network, text: str) -> Edit:
    import dataclasses

    kind, target = target_of(text)
    eg = net.egress
    if kind == "cidr":
        if target not in eg.allow_cidrs:
            return Edit(net, False, f"{target} is not in allow_cidrs of network {net.name}")
        new = dataclasses.replace(eg, allow_cidrs=tuple(c for c in eg.allow_cidrs if c != target))
    else:
        kept = tuple(a for a in eg.allow if _normal(a) != target)
        new = dataclasses.replace(eg, allow=kept)
        by = _allowed_by(new, target)
        if by:
            raise AivmError(f"{target} stays allowed on network {net.name}: {by}",
                            hint="deny that entry, or remove the preset from "
                                 "[networks.egress] presets", reason="allowed-by-parent")
        if kept == eg.allow:
            return Edit(net, False, f"{target} is not allowed on network {net.name}")
    return Edit(dataclasses.replace(net, egress=new), True,
                f"denied {target} on network {net.name}{_policy_note(net)}")


def _normal(entry: str) -> str:
    try:
        return rules.domain(entry)
    except AivmError:
        return entry


def _allowed_by(eg: Any, name: str) -> str:
    """Why `name` is allowed already ("" when it is not): an entry or a preset."""
    def covers(entry: str) -> bool:
        return name == entry or name.endswith("." + entry)

    for entry in eg.allow:
        if covers(_normal(entry)):
            return f"allow has {entry!r}"
    for preset in eg.presets:
        for entry in rules.preset_domains((preset,)):
            if covers(entry):
                return f"preset {preset!r} has {entry!r}"
    return ""


def _policy_note(net: Network) -> str:
    if net.egress.policy == "allowlist":
        return ""
    return (f" (policy is {net.egress.policy}: the list takes effect with "
            "policy = \"allowlist\" under [networks.egress])")


def nodes(net: Network) -> list[Any]:
    """The nodes a policy change rebuilds: the egress node, and the network XML (which stays
    the same unless the policy switches between open and filtered)."""
    from aivm.config.to_graph import egress_node, network_node
    from aivm.host.facts import detect

    facts = detect()
    return [network_node(net, facts)] + ([egress_node(net, facts)]
                                         if net.egress.policy != "open" else [])


def live_plan(conn: Any, net: Network, states: Mapping[str, NodeState]) -> Plan:
    """The egress policy (first: dnsmasq needs its servers-file), then the network when its
    XML changed (a switch between open and filtered restarts it; an allowlist edit never)."""
    from aivm.activate import live
    from aivm.config.to_graph import network_name
    from aivm.recipes.network_xml import NetworkXml

    xml = states[network_name(net.name)].path / NetworkXml.OUTPUT
    network = live.network_plan(conn, xml.read_text(), str(xml.parent))
    return plans.of(plan(net.name, states, reload_dns=network.is_empty), network)
