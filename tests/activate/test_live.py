"""live.py against libvirt's in-memory `test:///default` driver (no daemon needed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from aivm.activate import approve, live
from aivm.activate.approve import Policy, Ui
from aivm.activate.plan import Plan
from aivm.errors import AivmError
from aivm.recipes import render
from aivm.recipes.base import XMLNS

libvirt = pytest.importorskip("libvirt")


def network_xml(name: str, key: str) -> str:
    return render.render("network.xml.j2", name=name, key=key, xmlns=XMLNS, bridge=f"vb{name[-6:]}",
                         gateway="10.77.0.1", netmask="255.255.255.0",
                         dhcp_start="10.77.0.10", dhcp_end="10.77.0.200")


def domain_xml(name: str, key: str, *, memory_mib: int = 1024, cpus: int = 1,
               network: str = "default") -> str:
    return render.render(
        "domain.xml.j2", name=name, key=key, xmlns=XMLNS, accel="qemu", cpus=cpus,
        memory_mib=memory_mib, input_keys=[("base", "b" * 64)], disk=f"/state/{name}/disk.qcow2",
        seed="/store/ab-seed/seed.iso", console_log=f"/state/{name}/console.log",
        network=network, mac="52:54:00:aa:bb:01", shared_root="", shared_root_tag="",
        boot={"firmware": "bios", "kernel": "/store/k/vmlinuz", "initrd": "/store/k/initrd.img",
              "cmdline": "root=/dev/vda rw console=ttyS0"})


@pytest.fixture
def conn() -> Iterator[object]:
    c = live.connect("test:///default")
    before_doms = {d.name() for d in c.listAllDomains()}
    before_nets = {n.name() for n in c.listAllNetworks()}
    yield c
    for dom in c.listAllDomains():
        if dom.name() not in before_doms:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    for net in c.listAllNetworks():
        if net.name() not in before_nets:
            if net.isActive():
                net.destroy()
            net.undefine()
    c.close()


@pytest.fixture
def name() -> str:
    return "t" + uuid.uuid4().hex[:8]


def apply(plan: Plan) -> list[str]:
    out: list[str] = []
    approve.execute(plan, Policy(yes=True), Ui(ask=input, is_tty=lambda: False, say=out.append))
    return out


def titles(plan: Plan) -> list[str]:
    return [s.title for s in plan.steps]


def test_connect_failure_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(AivmError) as err:
        live.connect(f"qemu+unix:///system?socket={tmp_path}/no-such.sock")
    assert err.value.reason == "libvirt-unreachable"
    assert "--connect" in err.value.hint and "libvirt group" in err.value.hint


def test_node_key_reads_recipe_and_attribute_forms() -> None:
    assert live.node_key(network_xml("n", "k" * 64)) == "k" * 64
    attr = ('<domain><name>x</name><metadata><aivm:node xmlns:aivm="https://aivm.dev/xmlns/aivm/1"'
            ' key="KEY1" kind="domain-xml"/></metadata></domain>')
    assert live.node_key(attr) == "KEY1"
    other = ('<domain><name>x</name><metadata><o:node xmlns:o="https://example.org/x" key="no"/>'
             '</metadata></domain>')
    assert live.node_key(other) is None
    assert live.node_key("<domain><name>x</name></domain>") is None


def test_network_define_start_then_nothing_to_do(conn, name) -> None:
    xml = network_xml(name, "1" * 64)
    first = live.network_plan(conn, xml, "/store/n1/network.xml")
    assert titles(first) == [f"Define and start network {name}"]
    apply(first)
    state = live.read_network(conn, name)
    assert (state.exists, state.active, state.key) == (True, True, "1" * 64)
    again = live.network_plan(conn, xml, "/store/n1/network.xml")
    assert again.is_empty and again.notes == (f"network {name}: up to date",)


def test_network_changed_key_is_redefined(conn, name) -> None:
    apply(live.network_plan(conn, network_xml(name, "1" * 64), "/store/n1/network.xml"))
    plan = live.network_plan(conn, network_xml(name, "2" * 64), "/store/n2/network.xml")
    assert titles(plan) == [f"Redefine network {name}"]
    assert [a.meaning for a in plan.steps[0].actions][0] == f"stop network {name}"
    apply(plan)
    assert live.read_network(conn, name).key == "2" * 64
    assert live.read_network(conn, name).active


def test_stopped_network_with_same_key_is_only_started(conn, name) -> None:
    xml = network_xml(name, "1" * 64)
    apply(live.network_plan(conn, xml, "/store/n1/network.xml"))
    conn.networkLookupByName(name).destroy()
    plan = live.network_plan(conn, xml, "/store/n1/network.xml")
    assert titles(plan) == [f"Start network {name}"]
    apply(plan)
    assert live.read_network(conn, name).active


def test_domain_define_start_then_nothing_to_do(conn, name) -> None:
    xml = domain_xml(name, "a" * 64)
    plan = live.domain_plan(conn, xml, "/store/d1/domain.xml")
    assert titles(plan) == [f"Define VM {name}", f"Start VM {name}"]
    apply(plan)
    state = live.read_domain(conn, name)
    assert (state.active, state.key, state.memory_mib, state.cpus) == (True, "a" * 64, 1024, 1)
    assert state.disks == (f"/state/{name}/disk.qcow2", "/store/ab-seed/seed.iso")
    assert state.macs == ("52:54:00:aa:bb:01",)
    again = live.domain_plan(conn, xml, "/store/d1/domain.xml")
    assert again.is_empty and again.notes == (f"VM {name}: up to date",)


def test_changed_domain_is_redefined_and_restarted(conn, name) -> None:
    apply(live.domain_plan(conn, domain_xml(name, "a" * 64), "/store/d1/domain.xml"))
    uuid = live.read_domain(conn, name).uuid
    new = domain_xml(name, "b" * 64, memory_mib=2048, cpus=2)
    plan = live.domain_plan(conn, new, "/store/d2/domain.xml")
    assert titles(plan) == [f"Redefine VM {name}", f"Restart VM {name}"]
    assert plan.steps[0].why == ("memory: live 1024 MiB, desired 2048 MiB (restart required); "
                                 "cpus: live 1, desired 2 (restart required)")
    apply(plan)
    state = live.read_domain(conn, name)
    assert (state.active, state.key, state.memory_mib, state.cpus) == (True, "b" * 64, 2048, 2)
    assert state.uuid == uuid  # redefined in place, not a second domain
    assert live.domain_plan(conn, new, "/store/d2/domain.xml").is_empty


def test_changed_stopped_domain_applies_at_next_start(conn, name) -> None:
    apply(live.domain_plan(conn, domain_xml(name, "a" * 64), "/store/d1/domain.xml"))
    conn.lookupByName(name).destroy()
    plan = live.domain_plan(conn, domain_xml(name, "b" * 64, cpus=2), "/store/d2/domain.xml")
    assert titles(plan) == [f"Redefine VM {name}", f"Start VM {name}"]
    assert plan.steps[0].why == "cpus: live 1, desired 2 (applies at next start)"


def test_restart_can_be_left_to_the_user(conn, name) -> None:
    apply(live.domain_plan(conn, domain_xml(name, "a" * 64), "/store/d1/domain.xml"))
    plan = live.domain_plan(conn, domain_xml(name, "c" * 64, memory_mib=512),
                            "/store/d3/domain.xml", restart=False)
    assert titles(plan) == [f"Redefine VM {name}"]
    assert plan.notes == (f"VM {name}: restart to apply changes",)


def test_key_only_change_is_one_definition_line() -> None:
    old = live.parse_domain(domain_xml("vm", "a" * 64), active=True)
    new = live.parse_domain(domain_xml("vm", "f" * 64))
    assert [d.line for d in live.drift(new, old)] == [
        "definition: live key aaaaaaaaaaaa, desired key ffffffffffff (restart required)"]


def test_a_domain_aivm_did_not_define_is_left_alone(conn) -> None:
    with pytest.raises(AivmError) as err:  # test:///default ships a domain named "test"
        live.domain_plan(conn, domain_xml("test", "a" * 64), "/store/d1/domain.xml")
    assert err.value.reason == "not-aivm-owned"


def test_desired_xml_without_key_is_refused(conn) -> None:
    with pytest.raises(AivmError) as err:
        live.domain_plan(conn, "<domain type='qemu'><name>x</name></domain>", "/store/x.xml")
    assert err.value.reason == "no-node-key"


def test_remove_domain_and_network(conn, name) -> None:
    net = f"n{name}"
    apply(live.network_plan(conn, network_xml(net, "1" * 64), "/store/n1/network.xml"))
    apply(live.domain_plan(conn, domain_xml(name, "a" * 64, network=net), "/store/d1/domain.xml"))
    plan = live.remove_domain_plan(conn, name, timeout=2)
    assert [a.meaning for a in plan.steps[0].actions] == [
        f"shut VM {name} down (power off after 2 s)",
        f"remove the definition of VM {name} (saved state, snapshots, nvram)"]
    apply(plan + live.remove_network_plan(conn, net))
    assert live.lookup_domain(conn, name) is None
    assert not live.read_network(conn, net).exists
    assert live.remove_domain_plan(conn, name).notes == (f"VM {name}: not defined",)


def test_stop_plan_shuts_a_running_domain_down(conn, name) -> None:
    apply(live.domain_plan(conn, domain_xml(name, "a" * 64), "/store/d1/domain.xml"))
    apply(live.stop_plan(conn, name, timeout=5))
    assert not live.read_domain(conn, name).active
    assert live.stop_plan(conn, name).notes == (f"VM {name}: not running",)


class StubbornDomain:
    """A guest that ignores ACPI shutdown."""

    def __init__(self) -> None:
        self.active, self.shutdowns, self.destroyed = True, 0, False

    def isActive(self) -> bool:  # noqa: N802 (libvirt's name)
        return self.active

    def shutdown(self) -> None:
        self.shutdowns += 1

    def destroy(self) -> None:
        self.active, self.destroyed = False, True


def test_stop_domain_forces_off_after_timeout() -> None:
    dom, slept = StubbornDomain(), []
    assert live.stop_domain(dom, timeout=3, sleep=slept.append) is False
    assert dom.shutdowns == 1 and dom.destroyed and sum(slept) == 3


class LeasingNetwork:
    def DHCPLeases(self, mac: str):  # noqa: N802 (libvirt's name)
        rows = [{"ipaddr": "fd00::5", "mac": mac, "expirytime": 9},
                {"ipaddr": "10.77.0.11", "mac": mac.upper(), "hostname": "vm1", "expirytime": 5},
                {"ipaddr": "10.77.0.12", "mac": mac, "hostname": "vm1", "expirytime": 7}]
        return [r for r in rows if r["mac"].lower() == mac]


def test_leases_prefer_ipv4_and_the_newest() -> None:
    found = live.leases(LeasingNetwork(), "52:54:00:aa:bb:01")
    assert [lease.ip for lease in found] == ["10.77.0.12", "10.77.0.11", "fd00::5"]
    assert found[0].hostname == "vm1"


def test_lease_errors_are_aivm_errors(conn) -> None:
    with pytest.raises(AivmError) as err:  # the test driver has no DHCP lease support
        live.leases(conn.networkLookupByName("default"), "52:54:00:aa:bb:01")
    assert err.value.reason == "libvirt-error"
