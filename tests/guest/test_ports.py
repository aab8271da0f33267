"""Published ports without a guest: the `aivm port` syntax, config + run-time merging, the
supervisor script, the steps down/destroy add, the config's [[vms.ports]] checks."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from aivm.config.load import check_text, loads
from aivm.config.schema import Port, Vm
from aivm.errors import AivmError
from aivm.guest import ports, ssh


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("AIVM_NETNS", raising=False)
    return tmp_path


@pytest.mark.parametrize("text, want", [
    ("8000", (8000, 8000, "127.0.0.1")),
    ("8080:8000", (8000, 8080, "127.0.0.1")),
    ("0.0.0.0:8080:8000", (8000, 8080, "0.0.0.0")),
    ("[::1]:8080:8000", (8000, 8080, "::1")),
])
def test_port_syntax_is_dockers(text: str, want: tuple[int, int, str]) -> None:
    fwd = ports.parse(text)
    assert (fwd.guest, fwd.host, fwd.address) == want and fwd.source == "runtime"


@pytest.mark.parametrize("text", ["0", "70000", "x", "8080:y", "localhost:80:80", ""])
def test_bad_ports_are_refused(text: str) -> None:
    with pytest.raises(AivmError) as err:
        ports.parse(text)
    assert err.value.reason == "bad-port" and "HOST:GUEST" in (err.value.hint or "")


def test_spec_binds_only_the_address_asked_for() -> None:
    assert ports.Forward(8000, 18000).spec == "127.0.0.1:18000:localhost:8000"
    assert ports.Forward(80, 8080, "::1").spec == "[::1]:8080:localhost:80"
    assert ports.Forward(80, 8080, "0.0.0.0").loopback is False


def test_config_and_run_time_ports_merge_and_config_wins() -> None:
    vm = Vm(name="box", ports=(Port(8000), Port(3000, 3001)))
    ports.add(vm, ports.parse("9000"))
    assert [(f.host, f.guest, f.source) for f in ports.wanted(vm)] == [
        (8000, 8000, "config"), (3001, 3000, "config"), (9000, 9000, "runtime")]
    assert ports.add(vm, ports.parse("9000")) == ports.wanted(vm)          # again: unchanged
    with pytest.raises(AivmError, match="already forwards to guest port 8000"):
        ports.add(vm, ports.parse("8000:22"))
    with pytest.raises(AivmError) as err:
        ports.remove(vm, 8000)
    assert "remove it there" in (err.value.hint or "")
    assert [f.host for f in ports.remove(vm, 9000)] == [8000, 3001]


def test_status_without_a_forwarder_says_down() -> None:
    vm = Vm(name="box", ports=(Port(8000),))
    assert ports.status(vm) == [{"guest": 8000, "host": 8000, "address": "127.0.0.1",
                                 "source": "config", "state": "down"}]


def test_supervisor_script_is_valid_sh_and_uses_the_alias() -> None:
    script = ports.supervisor_script(ssh.Target("box", "agent", "10.0.0.2", Path("/k")), "box")
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert "-o ExitOnForwardFailure=yes" in script and "ServerAliveInterval=5" in script
    assert " box $(cat " in script and "10.0.0.2" not in script   # by alias, not address


def test_a_long_state_path_gets_a_short_control_socket(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / ("d" * 90)))
    sock = ports.control_socket("box")
    assert len(str(sock)) <= 88 and sock.name.endswith(".sock")


def test_nothing_to_stop_or_forget_without_state() -> None:
    assert ports.stop_step("box", "why") is None and ports.forget_step("box") is None
    ports.save_runtime("box", (ports.parse("9000"),))
    step = ports.forget_step("box")
    assert step is not None and step.title == "Remove the published ports of VM box"
    step.actions[0].perform()
    assert ports.runtime("box") == () and not list(ports.state_dir().iterdir())


def test_config_ports_are_checked() -> None:
    cfg = loads('[[vms]]\nname = "box"\n[[vms.ports]]\nguest = 8000\n[[vms.ports]]\n'
                'guest = 3000\nhost = 3001\naddress = "::1"\n')
    assert cfg.vms[0].ports == (Port(8000), Port(3000, 3001, "::1"))
    _, found = check_text('[[vms]]\nname = "box"\n[[vms.ports]]\nguest = 70000\n'
                          'address = "localhost"\n')
    assert {(f.keypath[-1], f.message) for f in found} == {
        ("guest", "port 70000 is out of range"),
        ("address", "'localhost' is not an IP address")}


def test_down_stops_a_running_supervisor() -> None:
    """The step `aivm down` adds kills the supervisor (found by its name) and ends its loop."""
    proc = subprocess.Popen(["sh", "-c", "sleep 60", "aivm-port-supervisor"])
    try:
        ports._write(ports._file("box", "pid"), f"{proc.pid}\n")
        # until the child has exec'd sh, its command line is still the test's python
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        deadline = time.monotonic() + 10
        while b"aivm-port-supervisor" not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        ports._write(ports._file("box", "forwards"), "-L 127.0.0.1:8000:localhost:8000\n")
        assert ports.supervisor_pid("box") == proc.pid
        step = ports.stop_step("box", "the VM stops")
        assert step is not None and step.title == "Stop the published ports of VM box"
        step.actions[0].perform()
        assert proc.wait(timeout=10) != 0
        assert not ports._file("box", "forwards").exists() and ports.stop_step("box", "") is None
    finally:
        proc.kill()


def test_a_pid_file_of_another_process_is_not_the_supervisor() -> None:
    ports._write(ports._file("box", "pid"), "1\n")
    assert ports.supervisor_pid("box") is None
