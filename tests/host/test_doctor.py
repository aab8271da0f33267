"""`aivm host doctor` on a fake host: whole reports, pass/warn/fail, exit verdicts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aivm.activate.accel import AccelChoice
from aivm.config.schema import Accel
from aivm.errors import AivmError
from aivm.host import doctor
from aivm.host.doctor import Level, Probes

GIB = 2**30


def libvirt_test_driver(uri: str) -> object:
    """libvirt's in-memory test driver stands in for the daemon (it reports libvirt 9.0.0)."""
    import libvirt

    return libvirt.open("test:///default")


def fake_probes(home: Path, **over: object) -> Probes:
    tools = {"qemu-img": "/usr/bin/qemu-img", "nft": "/usr/sbin/nft",
             "mmdebstrap": "/usr/bin/mmdebstrap"}
    base = Probes(
        which=lambda name: tools.get(name),
        is_file=lambda p: str(p) == "/usr/lib/qemu/virtiofsd" or p.is_file(),
        connect=libvirt_test_driver,
        euid=lambda: 1000,
        groups=lambda: (frozenset({"users", "libvirt"}), frozenset({"libvirt"})),
        accel=lambda: AccelChoice(Accel.KVM, "KVM ran the probe guest"),
        routes=lambda: ["192.168.1.0/24"],
        free_bytes=lambda p: 50 * GIB,
        hypervisor_user=lambda: "root",
        home=lambda: home,
        table_exists=lambda table: False,
    )
    return dataclasses.replace(base, **over)  # type: ignore[arg-type]


@pytest.fixture
def host(tmp_path: Path) -> tuple[doctor.Inputs, Path]:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    store = tmp_path / "store"
    return doctor.Inputs("qemu:///system", store, tmp_path / "config.toml"), home


def write_config(path: Path, *, subnet: str = "10.77.0.0/24", image: str = "") -> None:
    extra = '[[images]]\nname = "deb"\nsource = "debootstrap"\n' if image else ""
    path.write_text(f'[defaults]\nssh_pubkey = "~/.ssh/k.pub"\nssh_privkey = "~/.ssh/k"\n'
                    f'{"image = " + repr(image) if image else ""}\n'
                    f'[[vms]]\nname = "box"\n[[networks]]\nname = "aivm"\nsubnet = "{subnet}"\n'
                    f'gateway = "{subnet.rsplit(".", 1)[0]}.1"\n'
                    f'dhcp_start = "{subnet.rsplit(".", 1)[0]}.100"\n'
                    f'dhcp_end = "{subnet.rsplit(".", 1)[0]}.200"\n{extra}'.replace("'", '"'))


def test_fresh_host_without_config_is_ready(host) -> None:
    inputs, home = host
    report = doctor.run(inputs, fake_probes(home))
    assert report.ok
    assert doctor.render(report) == f"""\
warn  config            no config yet at {inputs.config_path}
                        fix: `aivm config init` (or `aivm up`, which writes the defaults)
pass  libvirt           reachable at qemu:///system (libvirt 9.0.0)
pass  permissions       in the libvirt group
pass  kvm               KVM usable (KVM ran the probe guest)
pass  qemu-img          /usr/bin/qemu-img (creates the VMs' disks)
pass  nft               /usr/sbin/nft (applies the guests' firewall)
pass  virtiofsd         /usr/lib/qemu/virtiofsd (shares folders with guests)
pass  mmdebstrap        /usr/bin/mmdebstrap (builds images with source = "debootstrap")
pass  store access      root can read {inputs.store} (not created yet: its parents are open)
pass  store space       50.0 GiB free at {inputs.store.parent}
warn  ssh key           no ssh key yet
                        fix: `aivm config init` creates ~/.ssh/aivm_ed25519.pub
pass  subnet            `aivm config init` will pick 10.77.0.0/24, which overlaps no host route
pass  network aivm      not created yet (`aivm up` or `aivm host net create` creates it)
ready: 0 failed, 2 warning(s), 11 passed
(privileged probes skipped: --sudo also checks the firewall tables)"""


def test_every_required_failure_has_a_fix(host) -> None:
    inputs, home = host
    write_config(inputs.config_path, subnet="192.168.1.0/24", image="deb")

    def unreachable(uri: str) -> object:
        raise AivmError(f"cannot reach libvirt at {uri}: no socket", hint="start libvirtd",
                        reason="libvirt-unreachable")

    probes = fake_probes(home, which=lambda name: None, is_file=lambda p: False,
                         connect=unreachable, groups=lambda: (frozenset(), frozenset()),
                         accel=lambda: AccelChoice(Accel.QEMU, "no /dev/kvm"),
                         free_bytes=lambda p: GIB)
    report = doctor.run(inputs, probes)
    assert not report.ok
    by_name = {c.name: c for c in report.checks}
    failed = {c.name for c in report.checks if c.level is Level.FAIL}
    assert failed == {"libvirt", "permissions", "qemu-img", "nft", "virtiofsd", "mmdebstrap",
                      "store space", "ssh key", "subnet"}
    assert all(c.fix for c in report.checks if c.level is not Level.PASS)
    assert by_name["kvm"].level is Level.WARN and not by_name["kvm"].required
    assert by_name["subnet"].detail == ("network aivm: 192.168.1.0/24 overlaps host route(s) "
                                        "192.168.1.0/24")
    assert "10.77.0.0/24" in by_name["subnet"].fix
    assert by_name["mmdebstrap"].required  # the config builds a debootstrap image
    assert by_name["ssh key"].detail == "missing: ~/.ssh/k.pub, ~/.ssh/k"
    assert by_name["permissions"].fix == "sudo adduser $USER libvirt, then log out and in again"
    assert doctor.render(report).splitlines()[-2] == \
        "not ready: 9 failed, 2 warning(s), 2 passed"


def test_group_added_but_not_in_this_session(host) -> None:
    inputs, home = host
    probes = fake_probes(home, groups=lambda: (frozenset({"users"}), frozenset({"libvirt"})))
    check = doctor.privilege_check("qemu:///system", probes)
    assert (check.level, check.detail) == (Level.FAIL, "in the libvirt group, but not in this "
                                                       "login session")
    assert doctor.privilege_check("qemu:///session", probes).level is Level.PASS
    assert doctor.privilege_check("qemu:///system", fake_probes(home, euid=lambda: 0)).detail \
        == "running as root"


def test_store_the_hypervisor_cannot_enter(host, tmp_path: Path) -> None:
    inputs, home = host
    inputs.store.mkdir()
    inputs.store.chmod(0o700)
    check = doctor.store_access_check(inputs.store, fake_probes(home,
                                                                hypervisor_user=lambda: "nobody"))
    assert check.level is Level.FAIL
    # pytest's own tmp dirs are 0700 too: the first one on the way is named, the rest counted
    assert check.detail.startswith("the hypervisor user nobody cannot enter directory /")
    assert check.detail.endswith(" more)")
    assert check.fix.startswith("run: chmod o+x -- ") and check.fix.endswith(f" {inputs.store}")


def test_space_thresholds(host) -> None:
    inputs, home = host
    levels = [doctor.free_space_check(inputs.store, fake_probes(home, free_bytes=lambda p, n=n:
                                                                n * GIB)).level
              for n in (1, 5, 20)]
    assert levels == [Level.FAIL, Level.WARN, Level.PASS]


def test_sudo_adds_firewall_and_json_shape(host) -> None:
    inputs, home = host
    write_config(inputs.config_path)
    (home / ".ssh" / "k").write_text("x")
    (home / ".ssh" / "k.pub").write_text("x")
    report = doctor.run(dataclasses.replace(inputs, sudo=True),
                        fake_probes(home, table_exists=lambda t: t == "aivm_aivm"))
    data = report.to_json()
    assert set(data) == {"ok", "uri", "sudo", "checks"}
    assert data["ok"] is True and data["sudo"] is True
    assert all(set(c) == {"name", "level", "detail", "fix", "required"} for c in data["checks"])
    assert data["checks"][-1] == {"name": "firewall aivm", "level": "pass",
                                  "detail": "nft table inet aivm_aivm applied", "fix": "",
                                  "required": False}
    assert [c["name"] for c in data["checks"]][-3:] == ["subnet", "network aivm", "firewall aivm"]


def test_store_access_leaves_out_owner_only_memory_states(tmp_path: Path) -> None:
    """A booted state's memory file is 0400 on purpose (libvirtd, as root, opens it for
    QEMU); the hypervisor user must read every other file (found on the real stack:
    doctor failed after a booted state was saved)."""
    import os
    import tempfile

    from aivm.graph.store import Store

    root = Path(tempfile.mkdtemp(prefix="aivm-doctor-", dir="/var/tmp"))
    try:
        os.chmod(root, 0o755)
        store = Store(root / "store").ensure()
        entry = store.root / ("0" * 32 + "-box.booted-state")
        entry.mkdir(mode=0o755)
        (entry / "disk.qcow2").write_bytes(b"layer")
        (entry / "memory.state").write_bytes(b"state")
        os.chmod(entry / "disk.qcow2", 0o444)
        os.chmod(entry / "memory.state", 0o400)
        probes = fake_probes(tmp_path, hypervisor_user=lambda: "nobody")
        assert doctor.store_access_check(store.root, probes).level is Level.PASS
        os.chmod(entry / "disk.qcow2", 0o400)   # a file QEMU opens itself must stay readable
        check = doctor.store_access_check(store.root, probes)
        assert check.level is Level.FAIL and "disk.qcow2" in check.fix
    finally:
        import shutil

        shutil.rmtree(root)
