"""Host-side network checks (issue 12 items 5 and 6): the bridge and the subnet must be free
on this host, apart from the network's own bridge and route. The real-stack version is
tests/e2e/test_host_nets.py."""

from __future__ import annotations

import ipaddress

import pytest

from aivm.activate import hostnet
from aivm.activate.hostnet import HostNets
from aivm.config.schema import Network
from aivm.errors import AivmError

NET = Network(name="lab", bridge="virbr-lab", subnet="10.77.0.0/24", gateway="10.77.0.1",
              dhcp_start="10.77.0.100", dhcp_end="10.77.0.254")
IF = ipaddress.IPv4Interface
NW = ipaddress.IPv4Network
HOST = HostNets(links=("lo", "eth0"),
                addrs=(("lo", IF("127.0.0.1/8")), ("eth0", IF("192.0.2.2/24"))),
                routes=(("eth0", NW("192.0.2.0/24")),))


def reasons(host: HostNets, own: str | None = None, net: Network = NET) -> list[str]:
    return [e.reason for e in hostnet.problems(net, host, own)]


def test_a_free_bridge_and_subnet_pass() -> None:
    assert reasons(HOST) == []


def test_an_existing_interface_that_is_not_the_networks_bridge_is_refused() -> None:
    for bridge in ("eth0", "lo"):
        net = Network(name="lab", bridge=bridge)
        found = hostnet.problems(net, HOST, None)
        assert [e.reason for e in found] == ["bridge-in-use"]
        assert found[0].message == (f"network lab: bridge {bridge!r} is an existing interface "
                                    "of this host that is not the network's own bridge")
    other = HostNets(links=(*HOST.links, "virbr-lab"))
    assert reasons(other, own="virbr-other") == ["bridge-in-use"]   # another network's bridge
    assert reasons(other, own="virbr-lab") == []                      # its own


def test_addresses_and_routes_overlapping_the_subnet_are_refused() -> None:
    on_lo = HostNets(HOST.links, (*HOST.addrs, ("lo", IF("10.77.0.5/32"))), HOST.routes)
    assert reasons(on_lo) == ["subnet-in-use"]
    assert hostnet.problems(NET, on_lo, None)[0].message == (
        "network lab: subnet 10.77.0.0/24 overlaps the host's address 10.77.0.5/32 of "
        "interface lo")
    wide = HostNets(HOST.links, HOST.addrs, (*HOST.routes, ("tun0", NW("10.0.0.0/8"))))
    assert reasons(wide) == ["subnet-in-use"]
    narrow = HostNets(HOST.links, HOST.addrs, (("wg0", NW("10.77.0.128/25")),))
    assert reasons(narrow) == ["subnet-in-use"]


def test_the_networks_own_bridge_and_route_are_left_out() -> None:
    own = HostNets((*HOST.links, "virbr-lab"), (*HOST.addrs, ("virbr-lab", IF("10.77.0.1/24"))),
                   (*HOST.routes, ("virbr-lab", NW("10.77.0.0/24"))))
    assert reasons(own, own="virbr-lab") == []
    assert reasons(own, own=None) == ["bridge-in-use", "subnet-in-use", "subnet-in-use"]
    # the config renamed the bridge: the old one's route goes when the network is redefined
    renamed = Network(name="lab", bridge="virbr-new")
    assert reasons(own, own="virbr-lab", net=renamed) == []


def test_read_parses_ip_json(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        ("link",): '[{"ifname":"lo"},{"ifname":"eth0"}]',
        ("-4", "addr"): '[{"ifname":"eth0","addr_info":[{"family":"inet","local":"192.0.2.2",'
                        '"prefixlen":24}]}]',
        ("-4", "route"): '[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"},'
                         '{"dst":"192.0.2.0/24","dev":"eth0"},{"dst":"10.9.9.9","dev":"wg0"}]',
    }
    seen = []

    def fake_run(cmd, timeout=None):  # type: ignore[no-untyped-def]
        seen.append(cmd)
        return type("R", (), {"stdout": answers[cmd.argv[2:]]})()

    monkeypatch.setattr(hostnet, "run", fake_run)
    assert hostnet.read() == HostNets(("lo", "eth0"), (("eth0", IF("192.0.2.2/24")),),
                                      (("eth0", NW("192.0.2.0/24")), ("wg0", NW("10.9.9.9/32"))))
    assert all(c.in_netns and not c.root for c in seen)   # in AIVM_NETNS, never as root itself


@pytest.fixture
def test_conn():  # type: ignore[no-untyped-def]
    """libvirt's in-memory test driver: it defines one network, `default` (bridge virbr0)."""
    import libvirt

    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


def test_plans_refuse_before_anything_else(test_conn,  # type: ignore[no-untyped-def]
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """up (early and in plan_up), vm update and host fw apply all ask hostnet.check first."""
    from aivm.activate import up, update
    from aivm.config.schema import Config, Vm

    taken = HostNets(HOST.links, HOST.addrs, (("wg0", NW("10.77.0.0/16")),))
    monkeypatch.setattr(hostnet, "read", lambda: taken)
    vm = Vm(name="box", network="lab")
    art = up.Artifacts(vm, NET, {})
    for attempt in (lambda: up.check_host(test_conn, Config(vms=(vm,), networks=(NET,)), vm),
                    lambda: up.plan_up(test_conn, None, art),  # type: ignore[arg-type]
                    lambda: update.plan_update(test_conn, None, art),  # type: ignore[arg-type]
                    lambda: hostnet.check_firewall(test_conn, NET, dry_run=True)):
        with pytest.raises(AivmError) as err:
            attempt()
        assert err.value.reason == "subnet-in-use"
        assert "overlaps the host's route 10.77.0.0/16 via wg0" in err.value.message


def test_fw_apply_needs_the_network_with_that_bridge(test_conn,  # type: ignore[no-untyped-def]
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostnet, "read", lambda: HOST)
    with pytest.raises(AivmError) as err:
        hostnet.check_firewall(test_conn, NET)
    assert (err.value.reason, err.value.message) == (
        "network-missing", "network lab is not defined, and its firewall filters bridge "
                           "'virbr-lab'")
    assert hostnet.check_firewall(test_conn, NET, dry_run=True).startswith(
        "network lab is not defined, and its firewall filters bridge 'virbr-lab': a real run "
        "refuses (create it first")
    other = Network(name="default", bridge="virbr-lab", subnet="10.78.0.0/24",
                    gateway="10.78.0.1", dhcp_start="10.78.0.10", dhcp_end="10.78.0.20")
    with pytest.raises(AivmError) as err:
        hostnet.check_firewall(test_conn, other)
    assert err.value.message.startswith("network default uses bridge 'virbr0'")
    mine = Network(name="default", bridge="virbr0", subnet="10.78.0.0/24",
                   gateway="10.78.0.1", dhcp_start="10.78.0.10", dhcp_end="10.78.0.20")
    assert hostnet.check_firewall(test_conn, mine) == (
        "firewall of network default: filters guest bridge virbr0 (libvirt network default, "
        "subnet 10.78.0.0/24)")
