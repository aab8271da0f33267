"""The agent's workplace, part 2, on the real stack: ONE running VM for the module.

`aivm ssh -- CMD` on the active VM and its exit code; plain OpenSSH reaching
the VM by its name through aivm's ssh config; a web server in the guest
reached on the host's loopback through a published port (config and run
time; inside the stack's namespace: the forwarder runs there), surviving a
guest reboot; `aivm cp` both ways with a 50 MB file and a folder, modes kept;
the no-op `aivm up` fast path timed against the full wait; destroy removes
the ports.

The VM is the run's shared one (tests/e2e/aivm_user.py SharedBoot): its first `up`
restores the booted state an earlier module saved (or boots and saves it when this
module runs first); the guest reboot below is this module's one boot.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.aivm_user import AivmUser, SharedBoot, debian_user, first_path
from tests.e2e.harness import RealStack
from tests.e2e.test_workplace import folders  # noqa: F401 (a fixture: /var/tmp work dir)

pytestmark = [pytest.mark.realstack, pytest.mark.slow, pytest.mark.shared_boot(1)]

VM = "aivm-2404"
PORT = 18080          # host side of the config's published port (guest 8000)
EXTRA = 18081         # added at run time with `aivm port`
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def user(realstack: RealStack, shared_store: Path, shared_boot: SharedBoot,
         tmp_path_factory) -> Iterator[AivmUser]:
    home = tmp_path_factory.mktemp("home")
    person = debian_user(realstack, home, shared_store, shared=shared_boot)
    person.edit(lambda t: t + f"\n[[vms.ports]]\nguest = 8000\nhost = {PORT}\n")
    started = time.monotonic()
    first = person.json("up", "--yes")
    TIMINGS[f"first up ({first_path(first)})"] = time.monotonic() - started
    yield person
    person.run("destroy", VM, "--yes", check=False)
    shared_boot.clear()
    print("\n".join(person.log))
    print("timings: " + ", ".join(f"{k} {v:.2f}" for k, v in TIMINGS.items()))


def ns(stack: RealStack, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", stack.netns, *argv], text=True,
                          capture_output=True, check=check, timeout=120)


def fetch(stack: RealStack, port: int) -> str:
    """GET /hello.txt on the namespace's loopback; '' when nothing answers."""
    code = ("import urllib.request,sys\ntry:\n print(urllib.request.urlopen("
            f"'http://127.0.0.1:{port}/hello.txt', timeout=10).read().decode(), end='')\n"
            "except OSError as e:\n print('', end='')")
    return ns(stack, "python3", "-c", code).stdout


def wait_for(what, seconds: float = 120.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(2)
    return what()


def test_ssh_dashes_run_on_the_active_vm_and_pass_the_exit_code(user: AivmUser) -> None:
    assert user.run("ssh", "--", "echo", "ok").stdout == "ok\n"
    assert user.run("ssh", "--", "false", check=False).returncode == 1
    assert user.run("ssh", "--", "sh", "-c", "'exit 7'", check=False).returncode == 7


def test_plain_openssh_reaches_the_vm_by_its_name(user: AivmUser, realstack: RealStack) -> None:
    config = user.home / ".local" / "state" / "aivm" / "ssh_config"
    assert f"Host {VM} aivm-{VM}\n" in config.read_text()
    for name in (VM, f"aivm-{VM}"):
        out = ns(realstack, "ssh", "-F", str(config), "-o", "BatchMode=yes", name, "hostname")
        assert out.stdout.strip() != ""


def test_a_guest_web_server_on_the_host_loopback(user: AivmUser, realstack: RealStack) -> None:
    user.run("ssh", "--", "sh", "-c", "'mkdir -p /tmp/www && echo hello from the guest > "
             "/tmp/www/hello.txt && (setsid python3 -m http.server 8000 --bind 127.0.0.1 "
             "--directory /tmp/www </dev/null >/dev/null 2>&1 &)'")
    assert wait_for(lambda: fetch(realstack, PORT), 30) == "hello from the guest\n"
    status = user.json("status")
    assert status["ports"] == [{"guest": 8000, "host": PORT, "address": "127.0.0.1",
                                "source": "config", "state": "up"}]
    assert f"port:     127.0.0.1:{PORT} -> guest 8000 (up)" in user.run("status").stdout

    added = user.run("port", VM, f"{EXTRA}:8000")
    assert f"published 127.0.0.1:{EXTRA} -> guest port 8000" in added.stderr
    assert fetch(realstack, EXTRA) == "hello from the guest\n"
    listed = json.loads(user.run("port", "--json").stdout)["ports"]
    assert {(p["host"], p["source"], p["state"]) for p in listed} == {
        (PORT, "config", "up"), (EXTRA, "runtime", "up")}
    user.run("port", VM, "--remove", str(EXTRA))
    assert fetch(realstack, EXTRA) == ""
    assert fetch(realstack, PORT) == "hello from the guest\n"


def test_the_published_port_is_not_on_the_main_namespace_loopback(user: AivmUser) -> None:
    import socket

    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", PORT)) != 0


def test_cp_both_ways_keeps_bytes_and_modes(user: AivmUser, folders: Path) -> None:  # noqa: F811
    work = folders
    big = work / "big.bin"
    big.write_bytes(os.urandom(50 * 2**20))
    folder = work / "proj"
    (folder / "sub").mkdir(parents=True)
    (folder / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (folder / "run.sh").chmod(0o755)
    (folder / "sub" / "secret.txt").write_text("only me\n")
    (folder / "sub" / "secret.txt").chmod(0o600)
    user.run("ssh", "--", "mkdir", "-p", "in")
    started = time.monotonic()
    user.run("cp", str(big), str(folder), f"{VM}:in/")
    TIMINGS["cp in (50 MB + folder) s"] = time.monotonic() - started
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    assert user.run("ssh", "--", "sha256sum", "in/big.bin").stdout.split()[0] == digest
    modes = user.run("ssh", "--", "stat", "-c", "%a.%n", "in/proj/run.sh",
                     "in/proj/sub/secret.txt").stdout.split()
    assert modes == ["755.in/proj/run.sh", "600.in/proj/sub/secret.txt"]

    out = work / "out"
    out.mkdir()
    started = time.monotonic()
    user.run("cp", f"{VM}:in/big.bin", f"{VM}:in/proj", str(out))
    TIMINGS["cp out (50 MB + folder) s"] = time.monotonic() - started
    TIMINGS["cp out MB/s"] = 50 / TIMINGS["cp out (50 MB + folder) s"]
    assert hashlib.sha256((out / "big.bin").read_bytes()).hexdigest() == digest
    assert (out / "proj" / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (out / "proj" / "sub" / "secret.txt").stat().st_mode & 0o777 == 0o600
    assert (out / "proj" / "sub" / "secret.txt").read_text() == "only me\n"
    refused = user.run("cp", str(big), str(out), check=False)
    assert refused.returncode != 0 and "no side of the copy names a VM" in refused.stderr


def test_no_op_up_is_fast_and_the_full_wait_is_not(user: AivmUser) -> None:
    stamp = user.home / ".local" / "state" / "aivm" / "vms" / f"{VM}.ready.json"
    stamp.unlink()
    user.json("up", "--yes")             # settles one-time steps (a fresh restore's shortcut)
    stamp.unlink()                       # as before this change: the full wait
    started = time.monotonic()
    slow = user.json("up", "--yes")
    TIMINGS["no-op up without the ready stamp s"] = time.monotonic() - started
    assert slow["ran"] == [] and "already_ready" not in slow and stamp.exists(), slow
    started = time.monotonic()
    fast = user.json("up", "--yes")
    TIMINGS["no-op up s"] = time.monotonic() - started
    assert fast["ran"] == [] and fast.get("already_ready") is True, fast
    assert TIMINGS["no-op up s"] < TIMINGS["no-op up without the ready stamp s"]


def test_the_forwarder_survives_a_guest_reboot(user: AivmUser, realstack: RealStack) -> None:
    user.run("ssh", "--", "sudo", "systemctl", "reboot", check=False)
    assert wait_for(lambda: fetch(realstack, PORT) == "", 60)       # the guest went down
    user.run("ssh", "--", "sh", "-c", "'true'", check=False)
    booted = wait_for(lambda: user.run("ssh", "--", "true", check=False).returncode == 0, 240)
    assert booted
    user.run("ssh", "--", "sh", "-c", "'mkdir -p /tmp/www && echo back > /tmp/www/hello.txt "
             "&& (setsid python3 -m http.server 8000 --bind 127.0.0.1 --directory /tmp/www "
             "</dev/null >/dev/null 2>&1 &)'")
    started = time.monotonic()
    assert wait_for(lambda: fetch(realstack, PORT), 90) == "back\n"   # no aivm command between
    TIMINGS["port back after reboot s"] = time.monotonic() - started


def test_destroy_removes_the_published_ports(user: AivmUser) -> None:
    user.run("port", VM, f"{EXTRA}:8000")
    ports = user.home / ".local" / "state" / "aivm" / "ports"
    pid = int((ports / f"{VM}.pid").read_text())
    user.run("destroy", VM, "--yes")
    assert not any(ports.glob(f"{VM}.*")), sorted(p.name for p in ports.iterdir())
    time.sleep(1)
    assert not Path(f"/proc/{pid}").exists()
