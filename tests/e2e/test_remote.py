"""A VM on another host (issue #17), on the real stack, one guest boot.

The stack's namespace is the remote machine: its libvirtd, its guest network, and an
sshd on its own private address (tests/e2e/remotehost.py) with its own aivm store root
and state dir (sshd's SetEnv). aivm runs in a second namespace, the user's laptop,
joined to it by a veth pair only: it reaches libvirt over qemu+ssh through that sshd,
copies the closure into the remote store over its one multiplexed ssh connection, and
reaches the guest only through the host (ProxyCommand). Every packet stays inside the
test's namespaces: the aivm process itself runs inside the laptop namespace (libvirt's
qemu+ssh starts ssh from within the process).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from aivm.activate.disk import backing_of
from aivm.graph.store import Store
from tests.e2e.aivm_user import AIVM, AivmUser, debian_user, seed_image
from tests.e2e.netns import netns_add, netns_delete, ns_pids, stop_pid
from tests.e2e.remotehost import SSHD, RemoteHost, remote_host

pytestmark = [pytest.mark.realstack, pytest.mark.slow,
              pytest.mark.skipif(not Path(SSHD).exists(), reason="needs openssh-server")]
VM = "aivm-2404"


class Laptop:
    """An aivm user whose every command runs inside the laptop namespace."""

    def __init__(self, user: AivmUser, client: str, host: RemoteHost, work: Path) -> None:
        self.user, self.client, self.host, self.work = user, client, host, work

    def env(self) -> dict[str, str]:
        env = dict(self.user.env)
        for name in ("AIVM_NETNS", "AIVM_HYPERVISOR_PID", "LIBVIRT_DEFAULT_URI"):
            env.pop(name, None)
        uri = (f"qemu+ssh://{self.host.destination}/system?socket={self.user.stack.socket}"
               f"&keyfile={self.work / 'client_key'}&no_verify=1&proxy=netcat")
        env.update(AIVM_LIBVIRT_URI=uri, AIVM_SSH_CONFIG=str(self.host.ssh_config),
                   XDG_RUNTIME_DIR=str(self.work / "r"), AIVM_STATE=str(self.work / "here"))
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 1500
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", "netns", "exec", self.client, *AIVM, *args],
                              env=self.env(), text=True, capture_output=True, timeout=timeout,
                              cwd=self.user.home, stdin=subprocess.DEVNULL)
        self.user.log.append(f"$ aivm {' '.join(args)} (exit {proc.returncode})\n"
                             f"{proc.stdout}{proc.stderr}")
        if check and proc.returncode != 0:
            raise AssertionError(f"aivm {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture(scope="module")
def laptop(realstack, shared_store: Path, private_store: Path):
    client = f"{realstack.netns}-cl"
    work = Path(f"/var/tmp/aivm-remote-{os.getpid()}")
    work.mkdir(mode=0o755)
    (work / "r").mkdir(mode=0o700)
    netns_add(client)
    try:
        with remote_host(client, work, server_netns=realstack.netns) as host:
            user = debian_user(realstack, work / "home", private_store)
            seed_image(user, shared_store)
            user.set_vm_key("host", json.dumps(host.destination))
            laptop = Laptop(user, client, host, work)
            laptop.run("build")  # built here, on the laptop, with the host's facts
            yield laptop
            Laptop(user, client, host, work).run("destroy", VM, "--yes", check=False)
    finally:
        for pid in ns_pids(client):
            stop_pid(pid, wait_s=5.0)
        netns_delete(client)
        shutil.rmtree(work, ignore_errors=True)


def test_1_up_copies_the_closure_and_the_guest_answers_through_the_host(laptop) -> None:
    host = laptop.host
    logins = host.accepted_logins()
    report = laptop.json("up", "--yes")
    assert report["host"] == host.destination, report
    assert report["steps"] and all(s.endswith((f"on {host.destination}",
                                              f"to {host.destination}"))
                                   for s in report["steps"]), report["steps"]
    assert any(s.startswith("Copy ") for s in report["ran"]), report["ran"]
    local, remote = Store(laptop.user.store), Store(host.store_root)
    names = {e.name for e in remote.entries()}
    overlay = next(n for n in names if n.endswith(f"-{VM}.overlay"))
    assert overlay in {e.name for e in local.entries()}
    disk = host.state_dir / VM / "disk.qcow2"
    assert disk.is_file() and backing_of(disk) == host.store_root / overlay / "disk.qcow2"
    assert not (laptop.work / "here" / VM).exists()  # nothing of the VM's state here
    domain = next(n for n in names if n.endswith(f"-{VM}.domain"))  # the one copied
    xml = (local.root / domain / "domain.xml").read_text()  # rendered with the host's facts
    assert f"{host.state_dir / VM}/disk.qcow2" in xml and str(laptop.work / "here") not in xml
    out = laptop.run("ssh", VM, "--", "cat", "/etc/hostname").stdout
    assert out.strip() == VM
    # aivm's own commands shared one ssh connection (libvirt's qemu+ssh has its own)
    assert host.accepted_logins() - logins <= 3, host.accepted_logins() - logins


def test_2_a_second_up_copies_nothing(laptop) -> None:
    report = laptop.json("up", "--yes")
    assert not any(s.startswith("Copy ") for s in report["steps"]), report["steps"]
    assert report["ran"] == [], report["ran"]
    host = laptop.host
    status = laptop.json("status", VM)
    assert status["host"] == host.destination and status["domain_state"] == "running"
    assert status["disk"] == f"{host.destination}:{host.state_dir / VM / 'disk.qcow2'}"
    assert status["disk_exists"] is True and status["ssh"] == "reachable", status
    # the recorded ssh_config block jumps through the host: plain ssh (VS Code, git) and
    # `aivm cp` (scp/rsync with that file) reach the guest by its alias
    managed = laptop.user.home / ".local" / "state" / "aivm" / "ssh_config"
    assert "ProxyCommand ssh " in managed.read_text()
    plain = subprocess.run(["ip", "netns", "exec", laptop.client, "ssh", "-F", str(managed),
                            "-o", "BatchMode=yes", VM, "cat", "/etc/hostname"],
                           env=laptop.env(), text=True, capture_output=True, timeout=120)
    assert plain.stdout.strip() == VM, plain.stderr
    note = laptop.work / "note.txt"
    note.write_text("through the host\n")
    laptop.run("cp", str(note), f"{VM}:/tmp/note.txt")
    assert laptop.run("ssh", VM, "--", "cat", "/tmp/note.txt").stdout == "through the host\n"
    listed = laptop.json("list", "--section", "vms")["vms"]
    assert [(v["name"], v["host"], v["state"]) for v in listed] == [
        (VM, host.destination, "running")]


def test_3_destroy_cleans_the_remote(laptop) -> None:
    host = laptop.host
    laptop.run("destroy", VM, "--yes")
    assert not (host.state_dir / VM).exists()
    assert not (host.store_root / "roots" / "vms" / VM).exists()
    assert VM not in laptop.user.stack.connect().listDefinedDomains()
    assert Store(host.store_root).entries()  # destroy keeps the store; gc --host frees it
    swept = laptop.json("gc", "--host", host.destination, "--yes")
    assert swept["live"] == [] and len(swept["dead"]) >= 6, swept
    assert Store(host.store_root).entries() == []
