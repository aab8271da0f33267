"""aivm/activate/egress.py without a stack: plans, allow/deny edits, deny-log parsing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aivm.activate import egress as live
from aivm.config.schema import Egress, EgressPolicy, Network
from aivm.errors import AivmError
from aivm.graph.node import Node
from tests.recipes.helpers import render_node

NFT_JSON = ('{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", '
            '"name": "denied4", "table": "aivm_egress_aivm", "type": ["ipv4_addr", '
            '"inet_proto", "inet_service"], "handle": 3, "size": 4096, "flags": ["timeout"], '
            '"timeout": 86400, "elem": [{"elem": {"val": {"concat": ["192.88.99.20", "tcp", '
            '80]}, "expires": 86390, "counter": {"packets": 6, "bytes": 360}}}, {"elem": '
            '{"val": {"concat": ["192.88.99.53", "udp", 53]}, "expires": 80000, "counter": '
            '{"packets": 1, "bytes": 60}}}]}}]}')
DNS_LOG = """\
Dec  4 08:59:39 dnsmasq[29963]: query[A] allowed.test from 10.77.0.100
Dec  4 08:59:39 dnsmasq[29963]: forwarded allowed.test to 192.88.99.53
Dec  4 08:59:39 dnsmasq[29963]: nftset add 4 inet aivm_egress_aivm allowed4 192.88.99.10
Dec  4 08:59:39 dnsmasq[29963]: reply allowed.test is 192.88.99.10
Dec  4 08:59:40 dnsmasq[29963]: query[A] other.test from 10.77.0.100
Dec  4 08:59:40 dnsmasq[29963]: config other.test is NXDOMAIN
Dec  4 09:00:40 dnsmasq[29963]: config other.test is NXDOMAIN
Dec  4 09:00:41 dnsmasq[29963]: config 1.0.77.10.in-addr.arpa is NXDOMAIN
"""


def net(policy: str = "allowlist", **kw: object) -> Network:
    return Network(egress=Egress(policy=EgressPolicy(policy), upstream_dns=("192.88.99.53",),
                                 **kw))  # type: ignore[arg-type]


def test_parse_the_deny_sets() -> None:
    got = live.parse_set(NFT_JSON)
    assert got[0] == live.Denied("192.88.99.20", "address", "tcp", 80, 6, 10)
    assert got[0].allow_command == "aivm net allow 192.88.99.20"
    assert got[1].kind == "resolver" and got[1].allow_command == ""


def test_refused_names_from_the_query_log() -> None:
    import time

    now = time.mktime(time.strptime("2026 Dec 4 09:01:40", "%Y %b %d %H:%M:%S"))
    names = live.refused_names(DNS_LOG, now, 2026)
    assert names == [live.Denied("other.test", "name", count=2, last_seen_s=60)]
    assert names[0].allow_command == "aivm net allow other.test"
    assert live.resolved_names(DNS_LOG) == {"192.88.99.10": "allowed.test"}


def test_a_denied_address_names_the_domain_it_came_from() -> None:
    from aivm.run import Result

    log = DNS_LOG + "Dec  4 09:00:00 dnsmasq[1]: reply old.test is 192.88.99.20\n"
    cmds = live.denied_cmds("aivm")
    results = {cmds[0]: Result(cmds[0], 0, NFT_JSON, ""),
               cmds[1]: Result(cmds[1], 1, "", "Error: No such file or directory"),
               cmds[2]: Result(cmds[2], 0, log, "")}
    found = live.denied("aivm", results)
    address = next(d for d in found if d.target == "192.88.99.20")
    assert address.name == "old.test" and address.allow_command == "aivm net allow old.test"
    assert {d.target for d in found} >= {"other.test", "192.88.99.53"}
    assert all(c.root for c in cmds)


def test_allow_and_deny_edit_the_network() -> None:
    first = live.allow(net(), "*.Example.COM")
    assert first.changed and first.network.egress.allow == ("example.com",)
    again = live.allow(first.network, "api.example.com")
    assert not again.changed and "already allowed" in again.note
    cidr = live.allow(first.network, "192.88.99.7")
    assert cidr.network.egress.allow_cidrs == ("192.88.99.7/32",)
    with pytest.raises(AivmError, match="always drops"):
        live.allow(first.network, "10.1.2.3")
    gone = live.deny(cidr.network, "example.com")
    assert gone.changed and gone.network.egress.allow == ()
    assert not live.deny(gone.network, "example.com").changed
    with pytest.raises(AivmError, match="preset 'pypi'"):
        live.deny(net(presets=("pypi",)), "files.pythonhosted.org")
    assert "policy is open" in live.allow(net("open"), "a.test").note


def test_apply_plan_flushes_learned_addresses_only_when_names_go(tmp_path: Path,
                                                                monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AIVM_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(live, "dnsmasq_pid", lambda network: 4242)

    def built(*names: str) -> Path:
        node = Node("net.aivm.egress", "egress-ruleset", params={
            "network": "aivm", "bridge": "virbr-aivm", "policy": "allowlist",
            "domains": names, "upstreams": ("192.88.99.53",)})
        return render_node(node, tmp_path / "-".join(names))

    old = built("a.test", "b.test")
    installed = live.rules.servers_file("aivm")
    installed.parent.mkdir(parents=True)
    installed.write_text((old / "allowed.conf").read_text())
    more = live.apply_plan("aivm", built("a.test", "b.test", "c.test"), "k1", reload_dns=True)
    shown = [a.shown for a in more.steps[0].actions]
    assert not any("flush set" in s for s in shown)
    assert any(s.endswith("kill -HUP 4242") for s in shown)
    fewer = live.apply_plan("aivm", built("a.test"), "k2", reload_dns=False)
    shown = [a.shown for a in fewer.steps[0].actions]
    assert sum("flush set" in s for s in shown) == 2
    assert not any("kill" in s for s in shown)   # the network (re)starts in this plan
    assert all(a.cmd is not None and a.cmd.root for a in fewer.steps[0].actions)
    # once applied (record + servers-file), nothing to do
    live.record_file("aivm").write_text(live.record_text("k3"))
    same = built("a.test", "b.test")
    assert live.apply_plan("aivm", same, "k3", reload_dns=True).is_empty


def test_open_policy_removes_only_what_aivm_applied(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AIVM_STATE", str(tmp_path / "state"))
    assert live.plan("aivm", {}, reload_dns=True).is_empty
    live.record_file("aivm").parent.mkdir(parents=True)
    live.record_file("aivm").write_text("k boot\n")
    step = live.plan("aivm", {}, reload_dns=True).steps[0]
    assert step.title == "Remove the egress policy of network aivm"
    assert "exec nft delete table inet" in step.actions[0].shown
    assert step.actions[0].shown.endswith(" aivm_egress_aivm")


def test_record_changes_with_the_boot(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    boot = tmp_path / "boot_id"
    boot.write_text("one\n")
    monkeypatch.setattr(live, "BOOT_ID", boot)
    before = live.record_text("k")
    boot.write_text("two\n")
    assert live.record_text("k") != before   # nft tables do not survive a reboot


def test_dnsmasq_pid_is_found_by_its_conf_file(tmp_path: Path) -> None:
    for pid, argv in ((10, [b"/usr/sbin/dnsmasq", b"--conf-file=/var/lib/libvirt/dnsmasq/x.conf"]),
                      (11, [b"/usr/sbin/dnsmasq", b"--conf-file=/var/lib/libvirt/dnsmasq/aivm.conf",
                            b"--leasefile-ro"]),
                      (12, [b"vim", b"--conf-file=/var/lib/libvirt/dnsmasq/aivm.conf"])):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(argv) + b"\0")
    assert live.dnsmasq_pid("aivm", tmp_path) == 11
    assert live.dnsmasq_pid("other", tmp_path) is None


def test_status_line_says_policy_and_state() -> None:
    assert live.summary(net("open"), {}).startswith("open")
    assert live.summary(dataclasses.replace(net(), egress=Egress(
        EgressPolicy.ALLOWLIST, allow=("a.test",), upstream_dns=("1.1.1.1",))), {}) == \
        "allowlist: 1 name, 0 ranges, not built (`aivm up` applies it)"


def test_dnsmasq_pid_in_another_namespace_is_never_chosen(tmp_path: Path,
                                                          monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # two stacks run a network "aivm" (the real-stack tests do): pick the one in our netns
    monkeypatch.delenv("AIVM_NETNS", raising=False)
    argv = b"/usr/sbin/dnsmasq\0--conf-file=/var/lib/libvirt/dnsmasq/aivm.conf\0"
    (tmp_path / "self" / "ns").mkdir(parents=True)
    ours = tmp_path / "self" / "ns" / "net"
    ours.write_text("ours")
    for pid, ns in ((11, "theirs"), (13, "ours")):
        (tmp_path / str(pid) / "ns").mkdir(parents=True)
        (tmp_path / str(pid) / "cmdline").write_bytes(argv)
        if ns == "ours":
            (tmp_path / str(pid) / "ns" / "net").hardlink_to(ours)
        else:
            (tmp_path / str(pid) / "ns" / "net").write_text(ns)
    assert live.dnsmasq_pid("aivm", tmp_path) == 13
    (tmp_path / "13" / "cmdline").write_bytes(b"sleep\0")
    assert live.dnsmasq_pid("aivm", tmp_path) is None
