"""Egress policy on the real stack: allowlist, deny log, live changes, offline. One guest boot.

A namespace stands for "the internet": joined to the stack's namespace by a
veth pair, it holds web/echo listeners and an upstream resolver (a second
dnsmasq with host records) that the network's dnsmasq forwards allowed names
to (dnsmasq fills nft sets only from upstream answers). Its addresses
(192.88.99.0/24, 2a0e:aaaa::/64) are in none of the firewall's always-blocked
ranges and exist only inside namespaces this module creates; every packet
stays inside them.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.aivm_user import AivmUser, debian_user, seed_image
from tests.e2e.harness import RealStack
from tests.e2e.netns import netns_add, netns_delete, ns_exec, ns_pids, stop_pid, wait_until

pytestmark = [pytest.mark.realstack, pytest.mark.slow]

VM = "aivm-2404"
NET = "aivm"
TABLE = "aivm_egress_aivm"
ALLOWED, OTHER, IN_CIDR, RESOLVER = "192.88.99.10", "192.88.99.20", "192.88.99.50", "192.88.99.53"
ALLOWED6 = "2a0e:aaaa::10"
LINK_NS, LINK_INET = "10.213.0.1", "10.213.0.2"
ECHO_PORT = 7007

ECHO_SERVER = """
import socket, socketserver, sys
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
class Server6(Server):
    address_family = socket.AF_INET6
cls = Server6 if ":" in sys.argv[1] else Server
cls((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
"""


@dataclass(frozen=True)
class Internet:
    netns: str
    work: Path


@contextlib.contextmanager
def internet(stack: RealStack) -> Iterator[Internet]:
    """The "internet" namespace: echo listeners and an upstream resolver, routed from the
    stack's namespace through a veth pair (created inside the namespaces only)."""
    name = f"{stack.netns}-inet"
    work = stack.work / "inet"
    work.mkdir(parents=True, exist_ok=True)
    try:
        netns_add(name)
        stack.ns_run(["ip", "link", "add", "aivminet0", "type", "veth", "peer", "name",
                      "aivminet1", "netns", name])
        stack.ns_run(["ip", "addr", "add", f"{LINK_NS}/30", "dev", "aivminet0"])
        stack.ns_run(["ip", "link", "set", "aivminet0", "up"])
        stack.ns_run(["ip", "route", "add", "192.88.99.0/24", "via", LINK_INET])
        ns_exec(name, "ip", "addr", "add", f"{LINK_INET}/30", "dev", "aivminet1")
        for addr in (ALLOWED, OTHER, IN_CIDR, RESOLVER):
            ns_exec(name, "ip", "addr", "add", f"{addr}/32", "dev", "lo")
        ns_exec(name, "ip", "-6", "addr", "add", f"{ALLOWED6}/128", "dev", "lo", "nodad")
        ns_exec(name, "ip", "link", "set", "aivminet1", "up")
        ns_exec(name, "ip", "route", "add", "default", "via", LINK_NS)
        script = work / "echo.py"
        script.write_text(ECHO_SERVER)
        for addr in (ALLOWED, OTHER, IN_CIDR, RESOLVER, ALLOWED6):
            ns_exec(name, "sh", "-c", f'{sys.executable} "$1" "$2" {ECHO_PORT} '
                    '</dev/null >/dev/null 2>&1 &', "sh", str(script), addr)
        ns_exec(name, "dnsmasq", "--conf-file=/dev/null", f"--listen-address={RESOLVER}",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--local=/test/",
                f"--pid-file={work / 'upstream.pid'}",
                f"--host-record=allowed.test,{ALLOWED},{ALLOWED6}",
                f"--host-record=other.test,{OTHER}", f"--host-record=incidr.test,{IN_CIDR}")
        wait_until(lambda: _listening(name, ECHO_PORT, 5), 15.0, "the echo listeners")
        yield Internet(name, work)
    finally:
        for pid in ns_pids(name):
            stop_pid(pid, wait_s=5.0)
        stack.ns_run(["ip", "link", "del", "aivminet0"], check=False)
        netns_delete(name)


def _listening(netns: str, port: int, count: int) -> bool:
    out = ns_exec(netns, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
    return len(out.strip().splitlines()) >= count


@pytest.fixture(scope="module")
def inet(realstack: RealStack) -> Iterator[Internet]:
    with internet(realstack) as net:
        yield net


@pytest.fixture(scope="module")
def user(realstack: RealStack, shared_store: Path, private_store: Path, tmp_path_factory,
         inet: Internet) -> Iterator[AivmUser]:
    person = debian_user(realstack, tmp_path_factory.mktemp("home"), private_store)
    seed_image(person, shared_store)
    person.edit(lambda t: t.replace("[networks.firewall]\n", (
        "# the agent may reach these and nothing else\n"
        "[networks.egress]\n"
        'policy = "allowlist"  # open | allowlist | offline\n'
        'allow = ["allowed.test"]\n'
        'allow_cidrs = ["192.88.99.48/28"]\n'
        f'upstream_dns = ["{RESOLVER}"]\n\n'
        "[networks.firewall]\n"), 1))
    yield person
    person.run("destroy", VM, "--yes", check=False)
    print("\n".join(person.log))


def guest(user: AivmUser, script: str) -> int:
    return user.ssh(VM, script, check=False).returncode


def echo_probe(host: str, port: int = ECHO_PORT) -> str:
    """A guest command that succeeds when host:port echoes a line back within 6 s."""
    return (f"timeout 6 bash -c 'exec 3<>/dev/tcp/{host}/{port}; echo ping >&3; "
            "read -r -t 4 line <&3; test \"$line\" = ping'")


def connects(user: AivmUser, host: str, port: int = ECHO_PORT) -> bool:
    return guest(user, echo_probe(host, port)) == 0


def succeed(user: AivmUser, probes: dict[str, str]) -> dict[str, bool]:
    """Run independent probes at once in one ssh session: whether each one succeeded.
    A blocked connection waits for its whole timeout; side by side they cost one."""
    script = " ".join(f"({cmd} && echo {name}=ok || echo {name}=no) &"
                      for name, cmd in probes.items()) + " wait"
    out = user.ssh(VM, script, check=False).stdout
    seen = dict(line.split("=", 1) for line in out.split() if "=" in line)
    assert set(seen) == set(probes), out
    return {name: seen[name] == "ok" for name in probes}


def resolves(user: AivmUser, name: str) -> bool:
    return guest(user, f"getent ahostsv4 {name} >/dev/null") == 0


def learned(stack: RealStack, set_name: str) -> str:
    return stack.ns_run(["nft", "list", "set", "inet", TABLE, set_name]).stdout


def diagnose(stack: RealStack, user: AivmUser | None = None) -> str:
    """The egress table and the tail of the network's DNS log, for a failure message."""
    table = stack.ns_run(["nft", "list", "ruleset"], check=False)
    direct = stack.ns_run(["timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/{OTHER}/{ECHO_PORT}"],
                          check=False)
    extra = f"from the stack namespace to {OTHER}: exit {direct.returncode}\n"
    if user is not None:
        extra += user.ssh(VM, "getent ahosts other.test; ip route", check=False).stdout
    log = stack.work / "state" / "egress" / NET / "dns.log"
    tail = "\n".join(log.read_text().splitlines()[-40:]) if log.exists() else "(no dns.log)"
    return f"{extra}{table.stdout}{table.stderr}\n--- dns.log\n{tail}"


def dnsmasq_pid(stack: RealStack) -> int:
    from aivm.activate.egress import dnsmasq_pid as find

    pid = find(NET, netns=stack.netns)
    assert pid is not None, "the network's dnsmasq is not running"
    return pid


def test_1_up_applies_the_policy(user: AivmUser, realstack: RealStack) -> None:
    report = user.json("up", "--yes")
    assert "Apply the egress policy of network aivm" in report["steps"]
    assert report["steps"].index("Apply the egress policy of network aivm") < \
        report["steps"].index("Define and start network aivm")
    status = user.json("status")
    assert status["egress"].startswith("allowlist: 1 name, 1 range") and "applied" in status[
        "egress"], status["egress"]
    assert "egress:   allowlist" in user.run("status").stdout
    tables = realstack.ns_run(["nft", "list", "tables"]).stdout
    assert f"table inet {TABLE}" in tables and "table inet aivm_aivm" in tables


def test_2_allowlist_from_inside_the_guest(user: AivmUser, realstack: RealStack) -> None:
    assert resolves(user, "allowed.test") and connects(user, "allowed.test")
    assert ALLOWED in learned(realstack, "allowed4")
    assert not resolves(user, "other.test"), "a name not allowed resolved"
    got = succeed(user, {"other": echo_probe(OTHER), "incidr": echo_probe(IN_CIDR),
                         "dns": echo_probe(RESOLVER, 53),
                         "dot": f"timeout 5 bash -c 'exec 3<>/dev/tcp/{RESOLVER}/853'"})
    assert not got["other"], "a bare IP outside the allowlist was reachable"
    assert got["incidr"], "an allow_cidrs address was blocked"
    assert not got["dns"], "a resolver other than the gateway was reachable"
    assert not got["dot"], "DNS over TLS to another resolver was reachable"
    # IPv6: the sets and drops exist and dnsmasq fills allowed6, but the guest has no path out
    assert guest(user, "getent ahostsv6 allowed.test >/dev/null") == 0
    assert ALLOWED6 in learned(realstack, "allowed6")
    assert user.ssh(VM, "ip -6 route show default").stdout.strip() == ""
    assert not connects(user, ALLOWED6), "the guest reached an IPv6 address"


def test_3_deny_log_lists_the_blocked_attempts(user: AivmUser) -> None:
    report = user.json("net", "denied")
    assert report["policy"] == "allowlist"
    by_target = {(d["target"], d["port"]): d for d in report["denied"]}
    bare = by_target[(OTHER, ECHO_PORT)]
    assert bare["kind"] == "address" and bare["proto"] == "tcp" and bare["count"] >= 1
    assert bare["allow"] == f"aivm net allow {OTHER}"
    name = by_target[("other.test", 0)]
    assert name["kind"] == "name" and name["allow"] == "aivm net allow other.test"
    assert by_target[(RESOLVER, 53)]["kind"] == "resolver"
    assert by_target[(RESOLVER, 53)]["allow"] == ""
    text = user.run("net", "denied").stdout
    assert "other.test" in text and "aivm net allow other.test" in text


def test_4_allow_is_live_and_keeps_open_connections(user: AivmUser,
                                                    realstack: RealStack) -> None:
    hold = ("rm -f /tmp/go /tmp/c1 /tmp/c2; nohup bash -c 'exec 3<>/dev/tcp/allowed.test/"
            f"{ECHO_PORT}; echo one >&3; read -r a <&3; echo $a > /tmp/c1; "
            "while [ ! -e /tmp/go ]; do sleep 0.2; done; echo two >&3; read -r -t 5 b <&3; "
            "echo $b > /tmp/c2' >/dev/null 2>&1 &")
    user.ssh(VM, hold)
    wait_until(lambda: guest(user, "grep -qx one /tmp/c1") == 0, 20.0, "the open connection")
    pid = dnsmasq_pid(realstack)
    dry = user.run("net", "allow", "other.test", "--dry-run")
    shown = dry.stdout + dry.stderr
    # dry runs build nothing: a new node is named (a store that has it shows the whole plan)
    assert 'net.aivm.egress: param domains ["allowed.test"] → ["allowed.test", "other.test"]' \
        in shown or (f"kill -HUP {pid}" in shown and "Redefine network" not in shown), shown
    assert 'allow = ["allowed.test"]' in user.config.read_text(), "--dry-run wrote the config"
    started = time.monotonic()
    proc = user.run("net", "allow", "other.test", "--yes")
    applied = proc.stdout + proc.stderr    # the steps are shown on stderr
    took = time.monotonic() - started
    assert f"dnsmasq (pid {pid}) to reread them: no network restart" in applied
    assert "network aivm: up to date" in applied and "Redefine network" not in applied
    text = user.config.read_text()
    assert "# the agent may reach these and nothing else" in text
    assert "# open | allowlist | offline" in text
    assert re.search(r'allow = \["allowed.test", "other.test"\]', text)
    assert dnsmasq_pid(realstack) == pid, "the network's dnsmasq was restarted"
    assert resolves(user, "other.test")
    assert connects(user, "other.test"), diagnose(realstack, user)
    user.ssh(VM, "touch /tmp/go")
    wait_until(lambda: guest(user, "grep -qx two /tmp/c2") == 0, 20.0,
               "the open connection to answer after `aivm net allow`")
    assert "Apply the egress policy of network aivm" not in user.json("up", "--yes")["steps"]
    print(f"\n`aivm net allow` applied live in {took:.1f} s")


def test_5_deny_takes_effect_at_once(user: AivmUser, realstack: RealStack) -> None:
    assert connects(user, "allowed.test")
    user.run("net", "deny", "allowed.test", "--yes")
    assert ALLOWED not in learned(realstack, "allowed4")
    assert not resolves(user, "allowed.test")
    assert not connects(user, ALLOWED), "a denied name's address stayed reachable"
    assert connects(user, "other.test")


def test_6_offline_without_a_network_restart(user: AivmUser, realstack: RealStack) -> None:
    pid = dnsmasq_pid(realstack)
    user.edit(lambda t: t.replace('policy = "allowlist"', 'policy = "offline"', 1))
    report = user.json("up", "--yes")
    assert "Apply the egress policy of network aivm" in report["steps"]
    assert set(report["steps"]) <= {"Apply the egress policy of network aivm",
                                    f"Record the store entries of VM {VM} as gc roots"}
    assert dnsmasq_pid(realstack) == pid
    assert not resolves(user, "other.test")
    got = succeed(user, {"other": echo_probe(OTHER), "incidr": echo_probe(IN_CIDR)})
    assert not got["other"] and not got["incidr"], got
    assert user.ssh(VM, "echo", "ok").stdout == "ok\n"   # the host still reaches the guest
    assert json.loads(user.run("status", "--json").stdout)["egress"].startswith("offline")
