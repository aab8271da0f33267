"""Host-side helpers for the real-stack harness: /dev/kvm mode, network
namespaces, processes we started, listeners, nft tables, log tails.

Every command goes through aivm.run; nothing here sends a packet from the
main namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aivm.errors import AivmError
from aivm.run import Cmd, Result, run

STOP_WAIT_S = 10.0


class HarnessError(AivmError):
    """The test stack could not be brought up or torn down."""




# ---- /dev/kvm mode (REALSTACK P2) -------------------------------------------------


@dataclass(frozen=True)
class KvmMode:
    gid: int
    mode: int


def kvm_fix(device: str = "/dev/kvm") -> KvmMode | None:
    """Make /dev/kvm root:kvm 0660; return the old mode when it was changed."""
    import grp

    st = os.stat(device)
    kvm_gid = grp.getgrnam("kvm").gr_gid
    if st.st_gid == kvm_gid and (st.st_mode & 0o777) == 0o660:
        return None
    run(Cmd.of("chgrp", "kvm", device, meaning="give /dev/kvm to group kvm", root=True))
    run(Cmd.of("chmod", "0660", device, meaning="let group kvm open /dev/kvm", root=True))
    return KvmMode(st.st_gid, st.st_mode & 0o777)


def kvm_restore(old: KvmMode | None, device: str = "/dev/kvm") -> None:
    if old is None:
        return
    run(Cmd.of("chgrp", str(old.gid), device, meaning="restore /dev/kvm group", root=True))
    run(Cmd.of("chmod", f"{old.mode:o}", device, meaning="restore /dev/kvm mode", root=True))


# ---- namespaces and processes -----------------------------------------------------


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def netns_add(name: str) -> None:
    if netns_exists(name):
        raise HarnessError(f"network namespace {name} already exists",
                           hint=f"a previous run left it: `ip netns pids {name}`, then "
                                f"`ip netns delete {name}`", reason="netns-exists")
    run(Cmd.of("ip", "netns", "add", name, meaning="create the test network namespace",
               root=True))
    ns_exec(name, "ip", "link", "set", "lo", "up", meaning="bring up loopback")


def netns_delete(name: str) -> None:
    if netns_exists(name):
        run(Cmd.of("ip", "netns", "delete", name, meaning="delete the test network namespace",
                   root=True))


def ns_exec(netns: str, *argv: str, meaning: str = "", check: bool = True,
            timeout: float | None = None, stdin: str | bytes | None = None) -> Result:
    """Run argv inside network namespace `netns`."""
    cmd = Cmd.of("ip", "netns", "exec", netns, *argv, meaning=meaning, root=True, stdin=stdin)
    return run(cmd, check=check, timeout=timeout)


def ns_pids(netns: str) -> list[int]:
    if not netns_exists(netns):
        return []
    out = run(Cmd.of("ip", "netns", "pids", netns, meaning="list processes in the namespace",
                     root=True), check=False).stdout
    return [int(p) for p in out.split()]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


def pid_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_pid(pid: int, wait_s: float = STOP_WAIT_S) -> None:
    """SIGTERM, wait, then SIGKILL one process we started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def start_listener(netns: str, address: str, port: int, logfile: Path) -> int:
    """A TCP listener (python http.server) inside `netns`; returns its pid once it listens."""
    script = (f'{sys.executable} -m http.server {port} --bind {address} '
              f'</dev/null >"$1" 2>&1 & echo $!')
    pid = int(ns_exec(netns, "sh", "-c", script, "sh", str(logfile),
                      meaning=f"listen on {address}:{port}").stdout.split()[0])
    wait_until(lambda: _listening(netns, port), 15.0, f"listener on {address}:{port}")
    return pid


def _listening(netns: str, port: int) -> bool:
    out = ns_exec(netns, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
    return bool(out.strip())


def wait_until(probe: Any, timeout_s: float, what: str, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout_s:.0f} s waiting for {what}",
                               reason="harness-timeout")
        time.sleep(every_s)


def console_log(path: str | os.PathLike[str], lines: int = 120, echo: bool = True) -> str:
    """The tail of a console/serial log, printed (unless not `echo`) and returned."""
    p = Path(path)
    try:
        text = p.read_text(errors="replace")
    except OSError as exc:
        text = f"(no log: {exc})"
    tail = "\n".join(text.splitlines()[-lines:])
    block = f"----- {p} (last {lines} lines) -----\n{tail}\n----- end {p.name} -----"
    if echo:
        print(block)
    return block


def nft_tables(netns: str) -> list[tuple[str, str]]:
    """(family, name) of every nft table inside `netns`."""
    out = ns_exec(netns, "nft", "list", "tables", check=False).stdout
    return [(w[1], w[2]) for w in (line.split() for line in out.splitlines())
            if len(w) == 3 and w[0] == "table"]
