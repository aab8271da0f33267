"""A provision node on the real stack: packages from a local apt repository (real .deb files
served on the test namespace's loopback, reachable by the builder only because its
apt_sources declare it), one shell step writing a marker; then a VM on the node, and a
re-create that installs nothing. Boots: the builder, the VM, then its re-creation beside
a second VM on the node.

Every daemon, the mirror, the builder's QEMU and every packet to a guest stay inside the
stack's network namespace (tests/e2e/harness.py; AIVM_NETNS runs the builder there).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aivm.run import Cmd, run
from tests.e2e.aivm_user import AivmUser, debian_user, seed_image
from tests.e2e.aptrepo import flat_repo
from tests.e2e.harness import RealStack
from tests.e2e.netns import stop_pid
from tests.recipes.test_provision_fence import start_http

pytestmark = [pytest.mark.realstack, pytest.mark.slow]

VM = "aivm-2404"
OTHER = "second"
PORT = 8765
PACKAGES = ("hello", "tree")     # depend on libc6 only, which the image has
TIMINGS: dict[str, float] = {}
SEEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def mirror(realstack: RealStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A flat apt repository of real .deb files on 127.0.0.1:PORT inside the stack's namespace."""
    repo = flat_repo(tmp_path_factory.mktemp("apt-repo"), PACKAGES)
    pid = start_http(realstack.netns, repo, realstack.work / "apt-mirror.log")
    try:
        yield f"deb [trusted=yes] http://127.0.0.1:{PORT}/ ./"
    finally:
        stop_pid(pid, wait_s=5.0)


@pytest.fixture(scope="module")
def user(realstack: RealStack, shared_store: Path, private_store: Path, mirror: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[AivmUser]:
    person = debian_user(realstack, tmp_path_factory.mktemp("home"), private_store)
    seed_image(person, shared_store)
    person.set_vm_key("image", '"tools"')
    # re-creation must boot a fresh disk on the layer here (what provisioning is for): a
    # booted-state restore would bring back the first boot's disk, host keys included
    person.edit(lambda t: t.replace("[behavior]\n", "[behavior]\nrestore_snapshots = false\n", 1))
    person.edit(lambda t: t + f'\n[[provisions]]\nname = "tools"\nbase = "debian"\n'
                              f'packages = {list(PACKAGES)!r}\n'
                              f'apt_sources = ["{mirror}"]\n'
                              f'run = ["echo baked > /etc/aivm-marker"]\n'.replace("'", '"'))
    yield person
    person.run("destroy", VM, "--yes", check=False)
    print("\n".join(person.log))
    print("timings:", {k: round(v, 1) for k, v in TIMINGS.items()})


def build_log(user: AivmUser, key: str) -> str:
    return (user.store / "log" / f"{key}.log").read_text()


def test_1_build_bakes_the_layer(user: AivmUser) -> None:
    started = time.monotonic()
    report = user.json("build")
    # the layer may be cached in a reused store (AIVM_TEST_STORE); its build log stays
    assert "provision.tools" in set(report["built"]) | set(report["cached"])
    if "provision.tools" in report["built"]:
        TIMINGS["provision build (with the VM's other nodes)"] = time.monotonic() - started
    node = report["nodes"]["provision.tools"]
    assert node["kind"] == "provision"
    assert report["nodes"][f"{VM}.overlay"]["kind"] == "overlay"
    log = build_log(user, node["key"])
    assert "apt-get install hello tree" in log and "result ok" in log
    assert f"allowed: GET 127.0.0.1:{PORT}" in log   # declared, so the fence let it through
    SEEN["builder machine-id"] = re.search(r"builder machine-id: (\w+)", log).group(1)
    SEEN["builder host keys"] = " ".join(re.findall(r"SHA256:\S+", log))
    entry = Path(node["path"])
    assert {p.name for p in entry.iterdir()} >= {"disk.qcow2", "vmlinuz", "initrd.img",
                                                 "boot.json"}
    info = run(Cmd.of("qemu-img", "info", "-U", str(entry / "disk.qcow2"))).stdout
    assert "backing file: ../" in info


def identity(user: AivmUser) -> tuple[str, str]:
    machine_id = user.ssh(VM, "cat", "/etc/machine-id").stdout.strip()
    # one string: ssh hands it to the guest's shell as it is
    keys = user.ssh(VM, "for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $k; done"
                    ).stdout
    return machine_id, " ".join(re.findall(r"SHA256:\S+", keys))


def assert_baked_and_nothing_installed(user: AivmUser) -> None:
    assert user.ssh(VM, "cat", "/etc/aivm-marker").stdout == "baked\n"
    assert user.ssh(VM, "hello").stdout.strip() == "Hello, world!"
    assert "Status: install ok installed" in user.ssh(VM, "dpkg", "-s", "tree").stdout
    dpkg_log = user.ssh(VM, "cat /var/log/dpkg.log 2>/dev/null || echo no-dpkg-log").stdout
    assert " install " not in dpkg_log and " status installed " not in dpkg_log, dpkg_log[-500:]
    cloud = user.ssh(VM, "sudo", "cat", "/var/log/cloud-init.log").stdout
    assert "Cloud-init v." in cloud and "finished at" in cloud      # the log is the real one
    assert "apt-get" not in cloud and "Installing packages" not in cloud
    lists = user.ssh(VM, "ls -A /var/lib/apt/lists; echo end").stdout
    assert "_Packages" not in lists and lists.endswith("end\n")   # no apt-get update ran


def test_2_vm_on_the_layer_has_it_and_installs_nothing(user: AivmUser) -> None:
    started = time.monotonic()
    user.json("up", "--yes")
    TIMINGS["first up on the layer (to ready)"] = time.monotonic() - started
    assert_baked_and_nothing_installed(user)
    SEEN["first"] = "|".join(identity(user))
    machine_id, keys = identity(user)
    assert machine_id and machine_id != SEEN["builder machine-id"]
    assert keys and not set(keys.split()) & set(SEEN["builder host keys"].split())


def test_3_recreate_runs_no_provisioning_and_gets_a_new_identity(user: AivmUser) -> None:
    # test_4's second VM boots beside the re-creation (guests have one vCPU each, this
    # machine two cores): one boot's wait less
    user.edit(lambda t: t + f'\n[[vms]]\nname = "{OTHER}"\n')
    user.json("up", OTHER, "--yes", "--no-wait")
    started = time.monotonic()
    report = user.json("up", "--recreate", "--yes")
    TIMINGS["recreate (to ready)"] = time.monotonic() - started
    assert report["built"] == []            # nothing rebuilt: the layer is reused
    assert_baked_and_nothing_installed(user)
    machine_id, keys = identity(user)
    first_id, first_keys = SEEN["first"].split("|")
    # systemd takes an empty machine-id from the VM's SMBIOS UUID: the same libvirt domain
    # keeps it; the layer carries none (test_2: not the builder's)
    assert machine_id == first_id != SEEN["builder machine-id"]
    assert not set(keys.split()) & set(first_keys.split())   # a fresh disk: new host keys


def test_4_a_second_vm_on_the_node_gets_its_own_identity(user: AivmUser) -> None:
    try:
        user.json("up", OTHER, "--yes")   # waits for the guest test_3 started
        machine_id = user.ssh(OTHER, "cat", "/etc/machine-id").stdout.strip()
        keys = user.ssh(OTHER, "for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $k; "
                        "done").stdout
        assert user.ssh(OTHER, "cat", "/etc/aivm-marker").stdout == "baked\n"
    finally:
        user.run("destroy", OTHER, "--yes", check=False)
        user.edit(lambda t: t.replace(f'\n[[vms]]\nname = "{OTHER}"\n', ""))
    first_id, first_keys = SEEN["first"].split("|")
    assert machine_id and machine_id not in (first_id, SEEN["builder machine-id"])
    found = set(re.findall(r"SHA256:\S+", keys))
    assert found and not found & set(first_keys.split())


def test_5_a_changed_step_rebuilds_that_layer_and_its_dependants_only(user: AivmUser) -> None:
    user.edit(lambda t: t.replace("echo baked", "echo rebaked", 1))
    try:
        plan = user.json("build", "--dry-run")
        stale = {n for n, s in plan["nodes"].items() if s["stale"]}
        assert stale == {"provision.tools", f"{VM}.overlay", f"{VM}.domain"}
        text = user.run("build", "--dry-run", "--explain").stdout
        assert "provision.tools (provision): param run" in text
    finally:
        user.edit(lambda t: t.replace("echo rebaked", "echo baked", 1))
    back = user.json("build", "--dry-run")
    assert not [n for n, s in back["nodes"].items() if s["stale"]]   # the old layer is reused
