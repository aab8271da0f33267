"""egress-ruleset: a network's egress allowlist, as an nft table and a dnsmasq servers-file.

Two files, one node (`net.<network>.egress`), built only when the network's
`[networks.egress] policy` is `allowlist` or `offline`:

- `egress.nft`: `table inet aivm_egress_<network>`, its own table beside the
  firewall's (`aivm_<network>`). nft runs every table's forward hook and a
  drop in any of them is final, so the firewall's host and LAN blocks hold
  whatever this table accepts. Forward, from the guest bridge: established
  traffic; DNS (53) and DNS over TLS/QUIC (853) to anything but the gateway
  dropped; then (allowlist) `allow_cidrs` and the addresses the network's
  dnsmasq put into `allowed4`/`allowed6`; everything else dropped and
  counted per destination in `denied4`/`denied6` (the deny log). The file
  only *adds* the learned sets, so reloading it keeps what dnsmasq learned
  (flushing them is a separate action when names are removed).
- `allowed.conf`: the servers-file the network's dnsmasq rereads on SIGHUP:
  `server=/<domain>/<upstream>` per allowed domain and upstream resolver.
  The network XML (recipes/network_xml.py) makes every other name NXDOMAIN
  (`address=/#/`, no resolv.conf) and adds every upstream answer to the sets
  (`nftset=/#/...`), so only allowed names are ever resolved and learned.

Measured on dnsmasq 2.90: `servers-file` is reread on SIGHUP (0.04 s to the
new answer); `nftset=` in a conf-file is not; an `address=` line in a
servers-file is ignored; an unqualified `server=` (or resolv.conf) beats
`address=/#/` and would resolve every name.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from aivm.graph.node import BuildContext, Node
from aivm.recipes import render, values
from aivm.recipes.base import RecipeBase

POLICIES = ("open", "allowlist", "offline")
FILTERED = ("allowlist", "offline")
PRESETS_FILE = Path(__file__).resolve().parent.parent / "data" / "egress_presets.toml"
DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
                    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
DOMAIN_SHAPE = "a domain name such as github.com or *.githubusercontent.com"
# The sets dnsmasq fills and the deny-log sets (aivm/activate/egress.py reads these names).
LEARNED = ("allowed4", "allowed6")
DENIED = ("denied4", "denied6")
DENY_TIMEOUT_S = 86400


class EgressRuleset(RecipeBase):
    kind: ClassVar[str] = "egress-ruleset"
    OUTPUT: ClassVar[str] = "egress.nft"
    SERVERS: ClassVar[str] = "allowed.conf"   # also the live servers-file's name
    version: ClassVar[int] = 1
    templates: ClassVar[tuple[str, ...]] = ("egress.nft.j2", "allowed.conf.j2")
    defaults: ClassVar[Mapping[str, Any]] = {"domains": (), "cidrs": (), "upstreams": ()}
    required: ClassVar[tuple[str, ...]] = ("network", "bridge", "policy")

    def check(self, node: Node) -> dict[str, Any]:
        p = super().check(node)
        policy = values.one_of(p["policy"], FILTERED, "egress policy")
        cidrs = allow_cidrs(p["cidrs"])
        upstreams = tuple(str(upstream(u)) for u in values._sequence(p["upstreams"], "upstreams"))
        domains = tuple(domain(d) for d in values._sequence(p["domains"], "allow"))
        if policy == "allowlist" and domains and not upstreams:
            raise values.invalid("upstream_dns", list(upstreams), "allowed names need an "
                                 "upstream resolver", "set [networks.egress] upstream_dns")
        return {
            "network": values.name(p["network"], "network name"),
            "table": table_name(p["network"]),
            "bridge": values.bridge(p["bridge"]),
            "policy": policy,
            "domains": domains if policy == "allowlist" else (),
            "cidrs4": [str(n) for n in cidrs if n.version == 4] if policy == "allowlist" else [],
            "cidrs6": [str(n) for n in cidrs if n.version == 6] if policy == "allowlist" else [],
            "upstreams": upstreams,
            "deny_timeout": DENY_TIMEOUT_S,
        }

    def build(self, ctx: BuildContext, into: Path) -> None:
        facts = self.check(ctx.node)
        render.write(into, self.OUTPUT, "egress.nft.j2", key=ctx.key, **facts)
        render.write(into, self.SERVERS, "allowed.conf.j2", key=ctx.key, **facts)


def table_name(network: str) -> str:
    """`aivm_egress_` + the network name with every other character as '_' (config
    validation refuses a network whose firewall table would be this name: `egress_x`)."""
    return "aivm_egress_" + re.sub(r"[^A-Za-z0-9_]", "_", values.name(network, "network name"))


def domain(value: Any, what: str = "allow") -> str:
    """A domain name, lower-case, without a leading `*.` (dnsmasq matches subdomains anyway)."""
    text = value.strip().lower().rstrip(".") if isinstance(value, str) else ""
    text = text[2:] if text.startswith("*.") else text
    if not DOMAIN.fullmatch(text) or "." not in text:
        raise values.invalid(what, value, DOMAIN_SHAPE,
                             "a name with at least one dot; '*.' only at the start")
    return text


def domains(items: Iterable[Any], what: str = "allow") -> tuple[str, ...]:
    """Sorted, without repeats, and without a name already covered by its parent."""
    names = sorted({domain(v, what) for v in items})
    return tuple(n for n in names if not any(n.endswith("." + p) for p in names))


def is_blocked(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether `net` overlaps a range the firewall always drops (private, loopback, ...)."""
    from aivm.recipes.nft_ruleset import BLOCKED_V4, BLOCKED_V6

    return any(net.version == b.version and net.overlaps(b)
               for b in map(ipaddress.ip_network, BLOCKED_V4 + BLOCKED_V6))


def allow_cidrs(items: Any, what: str = "allow_cidrs") -> tuple[Any, ...]:
    nets = values.networks(items, what)
    for net in nets:
        if is_blocked(net):
            raise values.invalid(what, str(net), "inside a range the firewall always drops "
                                 "(private, loopback, link-local, documentation, ...)",
                                 "LAN services go in [networks.firewall] allow_lan_tcp")
    return tuple(ipaddress.collapse_addresses([n for n in nets if n.version == 4])) + tuple(
        ipaddress.collapse_addresses([n for n in nets if n.version == 6]))


def upstream(value: Any, what: str = "upstream_dns") -> Any:
    """An IP address (IPv4Address or IPv6Address) of a resolver."""
    try:
        return ipaddress.ip_address(value)
    except (ValueError, TypeError):
        raise values.invalid(what, value, "an IP address of a DNS resolver") from None


@functools.cache
def presets() -> dict[str, tuple[str, ...]]:
    """Preset name -> its domains, from aivm/data/egress_presets.toml."""
    data = tomllib.loads(PRESETS_FILE.read_text())
    return {name: tuple(entry["allow"]) for name, entry in data.items()}


def preset_domains(names: Iterable[str]) -> tuple[str, ...]:
    found = presets()
    out: list[str] = []
    for name in names:
        if name not in found:
            raise values.invalid("presets", name, "not a known preset",
                                 "known presets: " + ", ".join(sorted(found)))
        out += found[name]
    return tuple(out)


def resolv_nameservers(path: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """The `nameserver` addresses of the host's resolv.conf (the default upstreams)."""
    from aivm.host.facts import nameserver_words

    return addresses(nameserver_words(path))


def addresses(words: tuple[str, ...]) -> tuple[str, ...]:
    """The IP addresses among resolv.conf `nameserver` values (zone ids dropped), once each."""
    found = []
    for word in words:
        try:
            found.append(str(ipaddress.ip_address(word.split("%", 1)[0])))
        except ValueError:
            continue
    return tuple(dict.fromkeys(found))


def state_dir(network: str, root: Path | None = None) -> Path:
    """Where the network's live egress files sit: the servers-file dnsmasq rereads, its
    query log, and the record of the applied node key (outside the store: they change
    in place, and the network XML names them). `root` is the host's state root (the
    graph passes its host facts' one); by default AIVM_STATE's."""
    if root is None:
        from aivm import paths

        root = paths.state_root()
    return root / "egress" / values.name(network, "network name")


def servers_file(network: str, root: Path | None = None) -> Path:
    return state_dir(network, root) / EgressRuleset.SERVERS


def dns_log(network: str, root: Path | None = None) -> Path:
    return state_dir(network, root) / "dns.log"


def check_field(field: str, value: Any) -> None:
    """Validate one `[networks.egress]` list from the config (raises AivmError)."""
    if field == "allow":
        domains(value)
    elif field == "allow_cidrs":
        allow_cidrs(list(value))
    elif field == "presets":
        preset_domains(value)
    elif field == "upstream_dns":
        for item in value:
            upstream(item)
