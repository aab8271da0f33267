"""The whole life of a VM on the real stack: build, up, ssh, firewall, no-op, change,
re-create from the cache, destroy, gc, and bad input. One module, few boots.

Every daemon and every packet to the guest stays inside the stack's network
namespace (tests/e2e/harness.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aivm.graph.store import Store
from tests.e2e.aivm_user import AivmUser, debian_user, seed_image
from tests.e2e.harness import RealStack
from tests.e2e.lanhost import lan_host
from tests.e2e.netns import ns_exec, start_listener, stop_pid

pytestmark = [pytest.mark.realstack, pytest.mark.slow]

VM = "aivm-2404"
ALLOWED, BLOCKED = 8082, 8081
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def user(realstack: RealStack, shared_store: Path, private_store: Path,
         tmp_path_factory) -> Iterator[AivmUser]:
    # a store of its own: test_6 collects it (the run's image copied in)
    person = debian_user(realstack, tmp_path_factory.mktemp("home"), private_store)
    seed_image(person, shared_store)
    person.set_vm_key("uid", "1234")
    # the classic path, asserted step by step: boot, restart, re-create by booting a fresh
    # disk (booted-state saves and restores have their own module, test_booted_state.py)
    person.edit(lambda t: t.replace("[behavior]\n", "[behavior]\nrestore_snapshots = false\n", 1))
    person.edit(lambda t: t.replace("[networks.firewall]\n",
                                    f"[networks.firewall]\nallow_tcp_ports = [{ALLOWED}]\n", 1))
    yield person
    person.run("destroy", VM, "--yes", check=False)
    print("\n".join(person.log))  # shown by pytest for a failing test (-rA shows all)


def gateway(user: AivmUser) -> str:
    match = re.search(r'(?m)^gateway = "([0-9.]+)"', user.config.read_text())
    assert match, "config init wrote no gateway"
    return match.group(1)


def can_connect(user: AivmUser, host: str, port: int) -> bool:
    probe = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port}'"
    return user.ssh(VM, probe, check=False).returncode == 0


def test_1_build_then_nothing(user: AivmUser) -> None:
    first = user.json("build")
    names = set(first["nodes"])
    assert names == {f"{VM}.domain", f"{VM}.overlay", f"{VM}.seed", "image.debian", "net.aivm",
                     "net.aivm.nft"}
    # the store holds the run's image (copied in): everything else is built here
    assert first["cached"] == ["image.debian"] and set(first["built"]) == names - {"image.debian"}
    second = user.json("build")
    assert second["built"] == [] and set(second["cached"]) == names


def test_2_up_ssh_cloud_init_uid(user: AivmUser) -> None:
    started = time.monotonic()
    report = user.json("up", "--yes")
    TIMINGS["first create"] = time.monotonic() - started
    assert "Define and start network aivm" in report["steps"]
    assert "Apply the firewall of network aivm" in report["steps"]
    assert f"Define VM {VM}" in report["steps"] and f"Start VM {VM}" in report["steps"]
    assert user.ssh(VM, "echo", "ok").stdout == "ok\n"
    assert "status: done" in user.ssh(VM, "cloud-init", "status").stdout
    assert user.ssh(VM, "id", "-u").stdout.strip() == "1234"
    status = user.json("status", "--sudo")
    assert status["domain_state"] == "running" and status["domain_current"]
    assert status["network_state"] == "active" and status["firewall"] == "applied"
    assert status["ssh"] == "reachable"


def test_3_firewall_host_ports_and_lan(user: AivmUser, realstack: RealStack) -> None:
    gw = gateway(user)
    pids = [start_listener(realstack.netns, gw, port, realstack.work / f"listen-{port}.log")
            for port in (ALLOWED, BLOCKED)]
    try:
        assert can_connect(user, gw, ALLOWED), "an allowed port on the host was blocked"
        assert not can_connect(user, gw, BLOCKED), "a non-allowed host port was reachable"
        with lan_host(realstack) as lan:
            assert not can_connect(user, lan.address, lan.port), "the LAN was reachable"
            user.edit(lambda t: t.replace("enabled = true", "enabled = false", 1))
            off = user.json("up", "--yes")
            assert off["steps"] == ["Remove the firewall of network aivm"]
            assert can_connect(user, lan.address, lan.port), "LAN unreachable without firewall"
            user.edit(lambda t: t.replace("enabled = false", "enabled = true", 1))
            on = user.json("up", "--yes")
            assert on["steps"] == ["Apply the firewall of network aivm"]
            assert not can_connect(user, lan.address, lan.port)
    finally:
        for pid in pids:
            stop_pid(pid, wait_s=5.0)


METADATA, METADATA_PORT = "169.254.169.254", 8083


def set_firewall(user: AivmUser, **settings: str) -> dict:  # type: ignore[type-arg]
    """Replace the [networks.firewall] keys given, then `aivm up`; its JSON report."""
    def change(text: str) -> str:
        head, marker, rest = text.partition("[networks.firewall]\n")
        section, nxt, tail = rest.partition("\n[")
        lines = [ln for ln in section.splitlines() if ln.split(" = ")[0] not in settings]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        return head + marker + "\n".join(lines) + nxt + tail
    user.edit(change)
    report = user.json("up", "--yes")
    roots = f"Record the store entries of VM {VM} as gc roots"  # a new ruleset is a new entry
    report["steps"] = [s for s in report["steps"] if s != roots]
    return report  # type: ignore[no-any-return]


def test_3b_allowed_ports_open_the_gateway_only_and_lan_needs_allow_lan(
        user: AivmUser, realstack: RealStack) -> None:
    gw = gateway(user)
    host_pid = start_listener(realstack.netns, gw, ALLOWED, realstack.work / "listen-gw.log")
    try:
        with lan_host(realstack) as lan:
            # a "metadata server" on the LAN host, routed like a LAN peer
            ns_exec(lan.netns, "ip", "addr", "add", f"{METADATA}/32", "dev", "aivmlan1")
            realstack.ns_run(["ip", "route", "add", f"{METADATA}/32", "via", lan.address])
            meta_pid = start_listener(lan.netns, METADATA, METADATA_PORT,
                                      realstack.work / "listen-meta.log")
            ports = f"[{ALLOWED}, {lan.port}, {METADATA_PORT}]"
            report = set_firewall(user, allow_tcp_ports=ports)
            assert report["steps"] == ["Apply the firewall of network aivm"]
            assert can_connect(user, gw, ALLOWED), "the allowed port on the gateway was blocked"
            assert not can_connect(user, lan.address, lan.port), \
                "allow_tcp_ports opened the port on a LAN peer"
            assert not can_connect(user, METADATA, METADATA_PORT), "metadata was reachable"

            report = set_firewall(user, allow_lan_tcp=f'["{lan.address}:{lan.port}"]')
            assert report["steps"] == ["Apply the firewall of network aivm"]
            assert can_connect(user, lan.address, lan.port), "allow_lan_tcp did not open it"
            assert not can_connect(user, METADATA, METADATA_PORT), "metadata was reachable"

            set_firewall(user, enabled="false")  # the probes above can fail: show they can pass
            assert can_connect(user, METADATA, METADATA_PORT)
            report = set_firewall(user, enabled="true", allow_lan_tcp="[]",
                                  allow_tcp_ports=f"[{ALLOWED}]")
            assert report["steps"] == ["Apply the firewall of network aivm"]
            stop_pid(meta_pid, wait_s=5.0)
            realstack.ns_run(["ip", "route", "del", f"{METADATA}/32"])
    finally:
        stop_pid(host_pid, wait_s=5.0)


def test_3c_up_to_date_is_the_live_table_content(user: AivmUser, realstack: RealStack) -> None:
    table = ["inet", "aivm_aivm"]
    before = realstack.ns_run(["nft", "list", "table", *table]).stdout
    assert can_connect(user, gateway(user), 22) is False  # traffic: the counters move
    after = realstack.ns_run(["nft", "list", "table", *table]).stdout
    assert after != before, "no counter moved: the traffic did not pass the firewall"
    quiet = user.json("up", "--yes")
    assert quiet["steps"] == [] and "firewall of network aivm: up to date" in quiet["notes"]
    assert user.json("status", "--sudo")["firewall"] == "applied"

    as_applied = realstack.ns_run(["nft", "-s", "list", "table", *table]).stdout
    realstack.ns_run(["nft", "insert", "rule", *table, "forward", "accept"])  # foreign edit
    assert user.json("status", "--sudo")["firewall"] == "outdated"
    assert user.json("up", "--yes")["steps"] == ["Apply the firewall of network aivm"]
    assert realstack.ns_run(["nft", "-s", "list", "table", *table]).stdout == as_applied

    # a flushed table (its chains emptied) and a deleted one are both noticed. Not `nft flush
    # ruleset`: that also drops libvirt's own chains in the stack, and libvirtd 9.0 makes them
    # only at start-up, so every later network start in the session would fail.
    realstack.ns_run(["nft", "flush", "table", *table])  # inside the stack's namespace only
    assert user.json("status", "--sudo")["firewall"] == "outdated"
    assert user.json("up", "--yes")["steps"] == ["Apply the firewall of network aivm"]
    realstack.ns_run(["nft", "delete", "table", *table])
    assert user.json("status", "--sudo")["firewall"] == "missing"
    assert user.json("up", "--yes")["steps"] == ["Apply the firewall of network aivm"]
    assert user.json("up", "--yes")["steps"] == []
    assert not can_connect(user, gateway(user), BLOCKED)


def test_4_up_again_changes_nothing_then_memory_restarts(user: AivmUser) -> None:
    again = user.json("up", "--yes")
    assert again["steps"] == [] and again["built"] == []
    # on the disk before the restart (synced: a restart may power the guest off), for test_5
    user.ssh(VM, "touch marker && sync && test -e marker")
    user.set_vm_key("memory_mib", "1280")
    rebuilt = user.json("build")
    assert rebuilt["built"] == [f"{VM}.domain"]
    assert "param memory_mib 1024 → 1280" in rebuilt["nodes"][f"{VM}.domain"]["reasons"]
    expected = [f"Redefine VM {VM}", f"Restart VM {VM}",
                f"Record the store entries of VM {VM} as gc roots"]
    plan = user.json("up", "--dry-run")  # runs no root command: it cannot read the firewall
    assert plan["steps"] == ["Apply the firewall of network aivm"] + expected
    assert "firewall of network aivm: not checked: reading the live nft table needs root, and " \
           "--dry-run runs no root command" in plan["notes"]
    applied = user.json("up", "--yes", "--no-wait")
    assert applied["ran"] == expected
    assert user.json("status")["domain_current"]


def test_5_recreate_from_cache(user: AivmUser) -> None:
    # re-created while the restarted guest still boots (one boot less to wait for): the
    # marker test_4 wrote is on the disk the re-creation replaces
    started = time.monotonic()
    report = user.json("up", "--recreate", "--yes")
    TIMINGS["re-create"] = time.monotonic() - started
    assert report["built"] == []
    assert f"Recreate the writable disk of VM {VM}" in report["steps"]
    assert user.ssh(VM, "test", "-e", "marker", check=False).returncode == 1
    print(f"\nfirst create {TIMINGS['first create']:.1f} s, "
          f"re-create {TIMINGS['re-create']:.1f} s")


def test_6_destroy_then_gc(user: AivmUser) -> None:
    store = Store(user.store)
    mine = {n: s["path"] for n, s in user.json("build")["nodes"].items()}
    store.add_root("e2e-keep-image", Path(mine["image.debian"]))  # explicit root: kept
    user.run("destroy", VM, "--yes")
    assert store.vm_roots(VM) == {}
    dry = user.json("gc", "--dry-run")
    unrooted = {p for n, p in mine.items() if n != "image.debian"}
    assert unrooted <= set(dry["dead"])
    assert mine["image.debian"] not in dry["dead"]
    assert all(Path(p).exists() for p in dry["dead"]), "a dry run removed something"
    user.run("gc", "--yes")
    assert not any(Path(p).exists() for p in unrooted)
    assert (Path(mine["image.debian"]) / "manifest.json").is_file()
    store.remove_root("e2e-keep-image")


def test_7_bad_input_refused_before_anything_is_defined(user: AivmUser, tmp_path: Path) -> None:
    blob = tmp_path / "not-the-image.qcow2"
    blob.write_bytes(b"not what was pinned")
    user.edit(lambda t: t + f'\n[[images]]\nname = "bad"\nsource = "fetch"\nurl = "{blob}"\n'
                            f'sha256 = "{"0" * 64}"\n\n[[vms]]\nname = "bad-vm"\nimage = "bad"\n')
    bad = user.run("up", "bad-vm", "--yes", check=False)
    assert bad.returncode != 0 and "sha256 mismatch" in bad.stderr
    assert user.json("status", "bad-vm")["domain_state"] == "missing"

    user.edit(lambda t: t + '\n[[networks]]\nname = "overlap"\nbridge = "virbr-ovl"\n'
                            'subnet = "10.77.0.128/25"\ngateway = "10.77.0.129"\n'
                            'dhcp_start = "10.77.0.130"\ndhcp_end = "10.77.0.200"\n'
                            '\n[[vms]]\nname = "vm2"\nnetwork = "overlap"\n')
    lint = user.run("config", "lint", check=False)
    assert lint.returncode == 1 and "overlap" in (lint.stdout + lint.stderr)
    up = user.run("up", "vm2", "--yes", check=False)
    assert up.returncode != 0 and "overlap" in up.stderr
