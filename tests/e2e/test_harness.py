"""The harness itself on the real stack: up, a NAT network, nft, a LAN host, down."""

from __future__ import annotations

import os
import sys

import pytest

from aivm.run import Cmd, run
from tests.e2e.harness import (
    RealStack,
    lan_host,
    nat_network_xml,
    netns_exists,
    nft_tables,
    ns_pids,
    pid_alive,
    pid_name,
)

pytestmark = [pytest.mark.realstack, pytest.mark.slow]

BRIDGE = f"aivmsmk{os.getpid() % 100000}"
RULESET = """table inet aivm_smoke {
    chain forward {
        type filter hook forward priority 0; policy accept;
        ip daddr 10.99.0.1 tcp dport 9 drop
    }
}
"""


def main_ns_has_link(name: str) -> bool:
    return run(Cmd.of("ip", "link", "show", name), check=False).ok


def test_stack_up_network_nft_and_nothing_left(realstack_host: None) -> None:
    stack = RealStack()
    with stack:
        conn = stack.connect()
        net = conn.networkDefineXML(nat_network_xml("aivm-smoke", BRIDGE, "10.77.9"))
        net.create()
        in_ns = {pid: pid_name(pid) for pid in ns_pids(stack.netns)}
        assert "dnsmasq" in in_ns.values()
        assert stack.ns_run(["ip", "link", "show", BRIDGE]).ok
        assert not main_ns_has_link(BRIDGE)
        assert "LIBVIRT_PRT" in stack.ns_run(["iptables", "-t", "nat", "-S"]).stdout
        stack.ns_run(["nft", "-f", "-"], stdin=RULESET, meaning="apply a test table")
        assert ("inet", "aivm_smoke") in nft_tables(stack.netns)
        assert "aivm_smoke" not in run(Cmd.of("nft", "list", "tables")).stdout
        started = {**stack.daemon_pids(), **{n: p for p, n in in_ns.items()}}
    print(f"stack up {stack.timings['up_s']:.2f} s, down {stack.timings['down_s']:.2f} s")
    assert not netns_exists(stack.netns)
    assert [n for n, p in started.items() if pid_alive(p) and pid_name(p) == n] == []
    assert not main_ns_has_link(BRIDGE)
    assert not stack.work.exists()


def test_session_stack_answers(realstack: RealStack) -> None:
    assert realstack.connect().getLibVersion() >= 9_000_000
    assert netns_exists(realstack.netns)
    assert realstack.env()["AIVM_NETNS"] == realstack.netns


def test_lan_host_is_reachable_only_from_the_stack_namespace(realstack: RealStack) -> None:
    fetch = [sys.executable, "-c", "import sys, urllib.request as u; "
             "print(u.urlopen(sys.argv[1], timeout=5).status)"]
    with lan_host(realstack) as lan:
        url = f"http://{lan.address}:{lan.port}/"
        assert realstack.ns_run([*fetch, url]).stdout.strip() == "200"
        assert not main_ns_has_link("aivmlan0")
        assert pid_alive(lan.listener_pid)
    assert not netns_exists(lan.netns)
    assert not pid_alive(lan.listener_pid)
    assert "aivmlan0" not in realstack.ns_run(["ip", "-br", "link"]).stdout


def test_libvirtd_sees_the_hosts_cgroups(realstack: RealStack) -> None:
    """libvirtd needs /sys/fs/cgroup to hot-plug virtiofs (it crashes without cgroups):
    the harness enters the network namespace with nsenter, which keeps the host's /sys
    (`ip netns exec` remounts /sys and hides it)."""
    pid = realstack.daemon_pids()["libvirtd"]
    with open(f"/proc/{pid}/mountinfo") as f:
        mounts = f.read().splitlines()
    assert any(line.split()[4] == "/sys/fs/cgroup" for line in mounts), mounts
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
