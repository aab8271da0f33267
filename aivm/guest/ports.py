"""Published ports: a guest's TCP port on the host's loopback, through a supervised ssh.

Mechanism, and why: one OpenSSH master per VM (`ssh -N -M -S <sock> -L ...`)
carries every published port of that VM. It needs nothing in the guest but
the sshd aivm already relies on, no root on the host, no nft rules and no
`route_localnet` (a DNAT to loopback would open the guest to anything that
can route to 127/8 on the bridge); a local forward binds exactly the address
asked for, 127.0.0.1 unless the user names another (with a warning). The
master uses `ExitOnForwardFailure` (a taken port is an error, not a silent
half-forward) and `ServerAliveInterval` (a dead guest is noticed in ~15 s).

A small supervisor (`setsid sh`, its pid in `<vm>.pid`) restarts the master
whenever it exits: a guest reboot, a restore from a saved state, a network
blip. It reads the forwards from `<vm>.forwards` at each start, so ports
added at run time (`aivm port`) survive a restart; a running master gets them
at once through its control socket (`ssh -O forward`/`-O cancel`). It gives
up after MAX_FAILURES quick failures in a row (the VM is gone: stopped or
crashed outside aivm), and `aivm down`/`destroy` stop it at once (`stop`).
`aivm up` (the no-op path too) and `aivm port` start it again when needed.
With AIVM_NETNS set, the supervisor and its ssh run inside that namespace:
the published port is on that namespace's loopback.

State, all under `<user state>/ports/`: `<vm>.json` the ports added at run
time, `<vm>.forwards` the `-L` specs the master carries, `<vm>.pid` the
supervisor, `<vm>.sock` the control socket, `<vm>.log` ssh's messages.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from aivm import fsutil, paths
from aivm.activate.plan import Action, Effect, Privilege, Step
from aivm.config.schema import Port, Vm
from aivm.errors import AivmError
from aivm.guest import ssh
from aivm.run import Cmd, run

LOOPBACK = "127.0.0.1"
MAX_FAILURES = 30          # quick failures in a row before the supervisor gives up
QUICK = 10                 # an ssh that lived fewer seconds than this failed quickly


@dataclass(frozen=True)
class Forward:
    guest: int
    host: int
    address: str = LOOPBACK
    source: str = "config"          # "config" or "runtime" (`aivm port`)

    @property
    def spec(self) -> str:
        addr = f"[{self.address}]" if ":" in self.address else self.address
        return f"{addr}:{self.host}:localhost:{self.guest}"

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback

    def label(self) -> str:
        return f"{self.address}:{self.host} -> guest port {self.guest}"


def of_port(port: Port, source: str = "config") -> Forward:
    return Forward(port.guest, port.host or port.guest, port.address, source)


def parse(text: str, address: str | None = None) -> Forward:
    """`aivm port` syntax, as docker's `-p`: `PORT`, `HOST:GUEST` or `ADDRESS:HOST:GUEST`
    (an IPv6 address in brackets)."""
    head, _, rest = text.rpartition(":") if text.count(":") >= 1 else ("", "", text)
    addr, _, host = head.rpartition(":") if head.count(":") >= 1 or head.startswith("[") \
        else ("", "", head)
    addr = addr.strip("[]")
    try:
        guest, host_n = int(rest), int(host) if host else int(rest)
    except ValueError:
        raise _bad(text) from None
    where = address or addr or LOOPBACK
    if not (1 <= guest <= 65535 and 1 <= host_n <= 65535):
        raise _bad(text)
    try:
        ipaddress.ip_address(where)
    except ValueError:
        raise _bad(text, f"{where!r} is not an IP address") from None
    return Forward(guest, host_n, where, "runtime")


def _bad(text: str, why: str = "") -> AivmError:
    return AivmError(f"bad port {text!r}" + (f": {why}" if why else ""),
                     hint="write PORT, HOST:GUEST or ADDRESS:HOST:GUEST, e.g. 8000 or "
                          "8080:8000 (ports 1-65535)", reason="bad-port")


# ---- what is published ---------------------------------------------------------------------

def state_dir() -> Path:
    return paths.user_state_dir() / "ports"


def _file(vm: str, suffix: str) -> Path:
    return state_dir() / f"{vm}.{suffix}"


def runtime(vm: str) -> tuple[Forward, ...]:
    try:
        data = json.loads(_file(vm, "json").read_text())
        return tuple(Forward(int(d["guest"]), int(d["host"]), str(d["address"]), "runtime")
                     for d in data)
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def save_runtime(vm: str, forwards: tuple[Forward, ...]) -> None:
    _write(_file(vm, "json"), json.dumps([asdict(f) for f in forwards], indent=1))


def wanted(vm: Vm) -> tuple[Forward, ...]:
    """The config's ports, then those added at run time; one forward per host address:port
    (the config wins)."""
    out: dict[tuple[str, int], Forward] = {}
    for fwd in (*(of_port(p) for p in vm.ports), *runtime(vm.name)):
        out.setdefault((fwd.address, fwd.host), fwd)
    return tuple(out.values())


def add(vm: Vm, fwd: Forward) -> tuple[Forward, ...]:
    """Record a run-time port (refused when its host address:port is already published)."""
    for have in wanted(vm):
        if (have.address, have.host) == (fwd.address, fwd.host):
            if have.guest == fwd.guest:
                return wanted(vm)
            raise AivmError(f"{fwd.address}:{fwd.host} already forwards to guest port "
                            f"{have.guest} of VM {vm.name}",
                            hint=f"remove it first: aivm port {vm.name} --remove {fwd.host}",
                            reason="port-taken")
    save_runtime(vm.name, (*runtime(vm.name), fwd))
    return wanted(vm)


def remove(vm: Vm, host: int) -> tuple[Forward, ...]:
    """Drop a run-time port by host port; a config port is refused (edit the config)."""
    left = tuple(f for f in runtime(vm.name) if f.host != host)
    if left == runtime(vm.name):
        configured = any(of_port(p).host == host for p in vm.ports)
        raise AivmError(f"VM {vm.name} has no run-time published port {host}",
                        hint="it comes from [[vms.ports]] in the config: remove it there"
                        if configured else f"see them: aivm port {vm.name}",
                        reason="no-such-port")
    save_runtime(vm.name, left)
    return wanted(vm)


# ---- the forwarder -------------------------------------------------------------------------

def control_socket(vm: str) -> Path:
    """The master's control socket; a hashed name under /tmp when the state path is too long
    for a unix socket (ssh adds 17 characters while creating it)."""
    path = _file(vm, "sock")
    if len(str(path)) <= 88:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(f"/tmp/aivm-{os.getuid()}-{digest}.sock")


def _control(vm: str, op: str, *extra: str) -> Cmd:
    return Cmd.of("ssh", "-S", str(control_socket(vm)), "-O", op, *extra, "aivm-forwarder",
                  meaning=f"ssh -O {op} on the port forwarder of VM {vm}", in_netns=True)


def master_alive(vm: str) -> bool:
    return control_socket(vm).exists() and run(_control(vm, "check"), check=False,
                                               timeout=10).ok


def supervisor_pid(vm: str) -> int | None:
    try:
        pid = int(_file(vm, "pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return pid if b"aivm-port-supervisor" in cmdline.read_bytes() else None
    except OSError:
        return None


def master_argv(target: ssh.Target, vm: str) -> list[str]:
    """ssh by the VM's alias in aivm's ssh config: a restart after the guest took another
    address uses the one `aivm up` recorded there."""
    from aivm.guest import sshconf

    return ["ssh", "-F", str(sshconf.managed_file()), "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-N", "-M",
            "-S", str(control_socket(vm)), "-o", "ExitOnForwardFailure=yes",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", target.alias]


def supervisor_script(target: ssh.Target, vm: str) -> str:
    """Restart ssh while the VM answers: forwards re-read at each start; give up after
    MAX_FAILURES quick failures in a row. `$0` names the process (found by `supervisor_pid`)."""
    argv = shlex.join(master_argv(target, vm))
    forwards, pid = shlex.quote(str(_file(vm, "forwards"))), shlex.quote(str(_file(vm, "pid")))
    log, sock = shlex.quote(str(_file(vm, "log"))), shlex.quote(str(control_socket(vm)))
    return (f"exec >>{log} 2>&1 </dev/null; echo $$ > {pid}; fails=0\n"
            f"while [ \"$fails\" -lt {MAX_FAILURES} ] && [ -s {forwards} ]; do\n"
            f"  rm -f {sock}; start=$(date +%s); {argv} $(cat {forwards})\n"
            f"  if [ $(( $(date +%s) - start )) -lt {QUICK} ]; then fails=$((fails+1)); "
            f"else fails=0; fi\n"
            f"  echo \"$(date -u +%FT%TZ) ssh exited ($fails quick failures)\"; sleep 2\n"
            f"done\nrm -f {pid}\n")


def _spec_args(forwards: tuple[Forward, ...]) -> str:
    return " ".join(f"-L {f.spec}" for f in forwards)


def _active(vm: str) -> set[str]:
    try:
        words = _file(vm, "forwards").read_text().split()
    except OSError:
        return set()
    return {w for w in words if w != "-L"}


def ensure(vm: Vm, target: ssh.Target, *, wait: float = 20.0) -> list[str]:
    """Make the VM's forwarder carry exactly `wanted(vm)`; lines to tell the user."""
    from aivm.guest import sshconf

    forwards = wanted(vm)
    sshconf.record(target)
    if not forwards:
        if supervisor_pid(vm.name) or master_alive(vm.name):
            stop(vm.name)
        return []
    lines = [f"warning: port {f.label()} is published on {f.address}, not loopback: other "
             "machines may reach the guest's service" for f in forwards if not f.loopback]
    before, now = _active(vm.name), {f.spec for f in forwards}
    _write(_file(vm.name, "forwards"), _spec_args(forwards) + "\n")
    if master_alive(vm.name):
        for spec in sorted(before - now):
            run(_control(vm.name, "cancel", "-L", spec), check=False, timeout=10)
        for spec in sorted(now - before):
            run(_control(vm.name, "forward", "-L", spec), timeout=10)
    elif supervisor_pid(vm.name) is None:
        _start(target, vm.name)
    if not _wait_alive(vm.name, wait):
        raise AivmError(f"the port forwarder of VM {vm.name} did not start",
                        hint=f"a published host port may be taken; see {_file(vm.name, 'log')}",
                        reason="port-forward-failed")
    return lines + [f"VM {vm.name}: published {f.label()}" for f in forwards
                    if f.spec not in before]


def _start(target: ssh.Target, vm: str) -> None:
    script = supervisor_script(target, vm)
    run(Cmd.of("setsid", "-f", "sh", "-c", script, "aivm-port-supervisor",
               meaning=f"start the port forwarder of VM {vm}", in_netns=True), timeout=30)


def _wait_alive(vm: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if master_alive(vm):
            return True
        time.sleep(0.5)
    return False


def stop(vm: str) -> bool:
    """Stop the supervisor and its master; True when something was running."""
    pid = supervisor_pid(vm)
    _file(vm, "forwards").unlink(missing_ok=True)    # the loop ends at its next turn
    if pid is not None:
        run(Cmd.of("kill", str(pid), meaning=f"stop the port supervisor of VM {vm}",
                   in_netns=True), check=False, timeout=10)
    alive = master_alive(vm)
    if alive:
        run(_control(vm, "exit"), check=False, timeout=10)
    return alive or pid is not None


def stop_step(vm: str, why: str) -> Step | None:
    """A plan step that stops the VM's forwarder (None when none runs)."""
    if supervisor_pid(vm) is None and not control_socket(vm).exists():
        return None
    return Step(f"Stop the published ports of VM {vm}", why,
                (Action.api(f"stop the ssh port forwarder of VM {vm}",
                            f"kill the supervisor in {_file(vm, 'pid')}; ssh -O exit",
                            lambda: stop(vm)),), Privilege.USER, Effect.USER_WRITE)


def forget_step(vm: str) -> Step | None:
    """destroy: stop the forwarder and drop the VM's run-time ports."""
    if not any(_file(vm, s).exists() for s in ("json", "pid", "forwards")):
        return None
    return Step(f"Remove the published ports of VM {vm}",
                "they go with the VM; ports in the config come back with a new VM",
                (Action.api(f"stop the port forwarder of VM {vm}, drop its run-time ports",
                            f"rm {state_dir()}/{vm}.*", lambda: forget(vm)),),
                Privilege.USER, Effect.USER_WRITE)


def forget(vm: str) -> None:
    """The VM is gone: stop its forwarder and drop its run-time ports."""
    stop(vm)
    for suffix in ("json", "pid", "log", "forwards"):
        _file(vm, suffix).unlink(missing_ok=True)


def status(vm: Vm) -> list[dict[str, object]]:
    """Each published port with its state (`up`: the forwarder carries it)."""
    alive = master_alive(vm.name)
    active = _active(vm.name) if alive else set()
    return [{"guest": f.guest, "host": f.host, "address": f.address, "source": f.source,
             "state": "up" if f.spec in active else "down"} for f in wanted(vm)]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(path, text)
