"""egress-ruleset and the filtered network XML: rendered files, nft loading, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivm.config import load
from aivm.config.to_graph import egress_node, network_node, vm_graph
from aivm.errors import AivmError
from aivm.graph.node import Node
from aivm.host.facts import read as read_facts
from aivm.recipes import egress
from aivm.run import Cmd, run
from tests.recipes.helpers import render_node

pytestmark = pytest.mark.usefixtures("state_root")

CONFIG = """
[[vms]]
name = "box"
image = "debian"

[[images]]
name = "debian"
source = "debootstrap"

[[networks]]
name = "aivm"

[networks.egress]
policy = "{policy}"
allow = ["*.Example.com", "api.example.com", "pypi.org"]
allow_cidrs = ["192.88.99.0/28"]
presets = ["github"]
upstream_dns = ["192.88.99.53", "2a0e:aaaa::53"]
"""


def network(policy: str = "allowlist"):  # type: ignore[no-untyped-def]
    net = load.loads(CONFIG.format(policy=policy)).network("aivm")
    assert net is not None
    return net


def render(tmp_path: Path, policy: str = "allowlist") -> Path:
    return render_node(egress_node(network(policy), read_facts()), tmp_path / policy)


def test_graph_has_the_egress_node_only_when_filtering() -> None:
    for policy, present in (("open", False), ("allowlist", True), ("offline", True)):
        cfg = load.loads(CONFIG.format(policy=policy))
        nodes = vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
        assert ("net.aivm.egress" in nodes) is present


def test_network_xml_is_the_same_for_every_filtering_policy() -> None:
    # an allowlist edit or allowlist <-> offline must not redefine (restart) the network
    facts = read_facts()
    assert network_node(network("allowlist"), facts) == network_node(network("offline"), facts)
    other = network("allowlist")
    import dataclasses

    more = dataclasses.replace(other, egress=dataclasses.replace(
        other.egress, allow=other.egress.allow + ("new.test",)))
    assert network_node(more, read_facts()) == network_node(other, read_facts())
    assert network_node(network("open"), read_facts()) != network_node(other, read_facts())


def test_names_are_normalised_and_deduplicated(tmp_path: Path) -> None:
    domains = egress_node(network(), read_facts()).params["domains"]
    assert "example.com" in domains and "pypi.org" in domains and "github.com" in domains
    assert "api.example.com" not in domains   # covered by example.com
    assert list(domains) == sorted(set(domains))
    servers = (render(tmp_path) / "allowed.conf").read_text()
    assert "server=/example.com/192.88.99.53\n" in servers
    assert "server=/example.com/2a0e:aaaa::53\n" in servers
    assert "server=/github.com/192.88.99.53\n" in servers
    assert "api.example.com" not in servers      # covered by example.com
    assert all(line.startswith(("#", "server=/")) for line in servers.splitlines())


def test_offline_resolves_nothing_and_accepts_nothing(tmp_path: Path) -> None:
    out = render(tmp_path, "offline")
    assert "server=" not in (out / "allowed.conf").read_text()
    ruleset = (out / "egress.nft").read_text()
    assert "@allowed4 accept" not in ruleset and "@cidrs4 accept" not in ruleset
    assert "192.88.99.0/28" not in ruleset


def test_dns_to_other_resolvers_is_dropped_before_any_accept(tmp_path: Path) -> None:
    lines = (render(tmp_path) / "egress.nft").read_text().splitlines()
    dns = next(i for i, line in enumerate(lines) if "th dport { 53, 853 }" in line)
    first_accept = next(i for i, line in enumerate(lines) if "@cidrs4 accept" in line)
    assert dns < first_accept


@pytest.mark.parametrize("policy", ["allowlist", "offline"])
def test_ruleset_loads_twice_and_keeps_learned_addresses(tmp_path: Path, netns: str,
                                                         policy: str) -> None:
    ruleset = render(tmp_path, policy) / "egress.nft"
    ns = ("ip", "netns", "exec", netns)
    for line in ruleset.read_text().splitlines():
        assert not (line.strip().endswith("}") and line.strip() != "}" and "{" not in line)
    run(Cmd.of(*ns, "nft", "-f", str(ruleset)))
    run(Cmd.of(*ns, "nft", "add", "element", "inet", "aivm_egress_aivm", "allowed4",
               "{ 192.88.99.77 }"))
    run(Cmd.of(*ns, "nft", "-f", str(ruleset)))     # a reload (an allowlist edit)
    listed = run(Cmd.of(*ns, "nft", "list", "table", "inet", "aivm_egress_aivm")).stdout
    assert "192.88.99.77" in listed, "a reload forgot what dnsmasq learned"
    assert ("192.88.99.0/28" in listed) is (policy == "allowlist")
    assert listed.count("chain forward") == 1


def test_filtered_network_xml_passes_libvirt_schema(tmp_path: Path) -> None:
    out = render_node(network_node(network(), read_facts()), tmp_path / "net")
    xml = (out / "network.xml").read_text()
    assert "<dnsmasq:option value=\"no-resolv\"/>" in xml
    assert "servers-file=/var/lib/aivm-test-state/egress/aivm/allowed.conf" in xml
    assert "nftset=/#/4#inet#aivm_egress_aivm#allowed4,6#inet#aivm_egress_aivm#allowed6" in xml
    assert "address=/#/" in xml
    assert "max-ttl=300" in xml   # guests re-ask within 5 min (after a deny flushed the sets)
    check = run(Cmd.of("virt-xml-validate", str(out / "network.xml"), "network"), check=False)
    assert check.ok, check.stderr + check.stdout
    plain = (render_node(network_node(network("open"), read_facts()), tmp_path / "open") /
             "network.xml").read_text()
    assert "dnsmasq" not in plain


@pytest.mark.parametrize(("field", "value", "why"), [
    ("allow", ["exa mple.com"], "domain name"),
    ("allow", ["github.com/evil"], "domain name"),
    ("allow", ["localhost"], "domain name"),
    ("allow", ["a.*.com"], "domain name"),
    ("allow_cidrs", ["10.0.0.0/8"], "always drops"),
    ("allow_cidrs", ["169.254.169.254/32"], "always drops"),
    ("allow_cidrs", ["203.0.113.0/24"], "always drops"),
    ("allow_cidrs", ["fd00::/8"], "always drops"),
    ("presets", ["nonsense"], "not a known preset"),
    ("upstream_dns", ["dns.google"], "IP address"),
])
def test_bad_values_are_refused_with_the_reason(field: str, value: list[str], why: str) -> None:
    with pytest.raises(AivmError, match=why):
        egress.check_field(field, value)


def test_config_lint_reports_a_bad_allow_entry() -> None:
    from aivm.errors import ConfigError

    bad = CONFIG.format(policy="allowlist").replace('"pypi.org"', '"pypi org"')
    with pytest.raises(ConfigError, match="pypi org"):
        load.loads(bad)


def test_allowed_names_need_an_upstream(tmp_path: Path) -> None:
    node = Node("net.x.egress", "egress-ruleset", params={
        "network": "x", "bridge": "virbr-x", "policy": "allowlist", "domains": ("a.test",)})
    with pytest.raises(AivmError, match="upstream"):
        render_node(node, tmp_path / "x")


def test_presets_come_from_the_data_file() -> None:
    presets = egress.presets()
    assert set(presets) >= {"github", "pypi", "npm", "debian", "ubuntu"}
    for names in presets.values():
        assert egress.domains(names)


def test_resolv_conf_nameservers(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\n"
                    "search lan\nnameserver 127.0.0.53\n")
    assert egress.resolv_nameservers(conf) == ("127.0.0.53", "fe80::1")
