"""A private libvirt stack inside a network namespace, for real end-to-end tests.

`RealStack` starts virtlogd and libvirtd inside a network namespace of its own
(`aivm-t-<pid>`) *and* a private mount namespace in which libvirt's own
directories are bind-mounted from a work directory:

    /etc/libvirt       <- WORK/etc    (a copy of the host's *.conf, no domains,
                                       no networks, no autostart)
    /run/libvirt       <- WORK/run    (sockets, pid files of drivers)
    /var/lib/libvirt   <- WORK/lib    (domain state, nvram, dnsmasq leases)
    /var/log/libvirt   <- WORK/log    (libvirtd.log, qemu/<domain>.log)
    /var/cache/libvirt <- WORK/cache  (QEMU capabilities)

libvirtd.conf has no setting that moves the QEMU and network drivers' state
and config directories, so changing only `unix_sock_dir` would still share
`/etc/libvirt/qemu` and `/run/libvirt/qemu` with a system libvirtd. The mount
namespace moves all of them, so a system libvirtd (if one runs) and other
stacks are untouched, and teardown is "stop our processes, delete WORK".
Clients reach the daemon from anywhere through `uri`
(`qemu+unix:///system?socket=WORK/run/libvirt-sock`).

Consequence: a file that QEMU must open may not live under one of the five
paths above on the host side, because libvirtd and QEMU see the private
copies there. `env()` therefore points `AIVM_STATE` into WORK. QEMU runs as
libvirt-qemu (Debian's default, kept), so its files must sit in directories
that user can traverse (not a 0700 pytest tmp dir). The one trace left on the
host is an empty /run/libvirt directory (a bind mount point, created if it was
missing; removing it could detach a concurrent stack's mount).

Every packet stays inside the namespace: libvirt's bridge, dnsmasq and NAT
rules live there; `ns_run` runs probes and ssh there.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aivm.errors import AivmError
from aivm.run import Cmd, Result, run

PRIVATE_DIRS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}

# Runs as: ip netns exec NS unshare --mount --propagation private sh -ec SCRIPT sh WORK
# $1 is WORK; each private dir is bound over libvirt's own, then both daemons
# start in this mount namespace (they keep it alive after sh exits).
_START_SCRIPT = """
for pair in etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt \
            log:/var/log/libvirt cache:/var/cache/libvirt; do
    mkdir -p "${pair#*:}"
    mount --bind "$1/${pair%%:*}" "${pair#*:}"
done
virtlogd -d -p "$1/virtlogd.pid"
libvirtd -d -p "$1/libvirtd.pid"
"""

# libvirtd probes QEMU on first start (7.7 s here); a probe result kept across
# runs brings that to 0.1 s. libvirt itself discards it when QEMU, libvirt or
# the kernel changes, so a stale copy costs one probe, never a wrong answer.
CAPS_CACHE = Path("/var/tmp/aivm-realstack/qemu-cache")
LIBVIRTD_LOG = 'log_outputs="3:file:/var/log/libvirt/libvirtd.log"\n'
SOCKET_WAIT_S = 60.0
STOP_WAIT_S = 10.0

_counter = itertools.count()
ACTIVE: list[RealStack] = []   # started and not yet stopped (conftest prints their logs)


class HarnessError(AivmError):
    """The test stack could not be brought up or torn down."""


def unavailable_reason() -> str | None:
    """Why a real stack cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "real-stack tests need root (network namespaces, libvirtd)"
    if not Path("/dev/kvm").exists():
        return "/dev/kvm is absent"
    for binary in ("qemu-system-x86_64", "libvirtd", "virtlogd"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (run scripts/deps.sh)"
    return None


def unique_name(prefix: str = "aivm-t") -> str:
    n = next(_counter)
    return f"{prefix}-{os.getpid()}" + (f"-{n}" if n else "")


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


# ---- the stack ----------------------------------------------------------------------


@dataclass
class RealStack:
    """virtlogd + libvirtd in a network namespace and private libvirt directories.

    Use as a context manager; `stop()` always runs on exit and undoes
    everything `start()` did, even after a failure halfway.
    """

    work: Path = field(default_factory=lambda: Path("/tmp") / unique_name())
    netns: str = ""
    keep_work: bool = field(default_factory=lambda: os.environ.get("AIVM_KEEP_REALSTACK") == "1")
    qemu_conf_extra: str = ""
    caps_cache: Path | None = CAPS_CACHE
    watched_logs: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _kvm_old: KvmMode | None = None
    _conn: Any = None
    _started_pids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.netns = self.netns or self.work.name

    # -- public surface

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def socket(self) -> Path:
        return self.work / "run" / "libvirt-sock"

    @property
    def log_dir(self) -> Path:
        """Host path of the daemons' /var/log/libvirt (qemu/<domain>.log, libvirtd.log)."""
        return self.work / "log"

    def env(self) -> dict[str, str]:
        """Environment for an `aivm` subprocess that must use this stack."""
        return {"AIVM_NETNS": self.netns, "LIBVIRT_DEFAULT_URI": self.uri,
                "AIVM_LIBVIRT_URI": self.uri, "AIVM_STATE": str(self.work / "state")}

    def connect(self) -> Any:
        """A libvirt-python connection to this stack's daemon (opened once)."""
        import libvirt

        if self._conn is None:
            self._conn = libvirt.open(self.uri)
        return self._conn

    def ns_run(self, argv: Sequence[str], *, meaning: str = "", check: bool = True,
               timeout: float | None = None, stdin: str | bytes | None = None) -> Result:
        return ns_exec(self.netns, *argv, meaning=meaning, check=check, timeout=timeout,
                       stdin=stdin)

    def watch(self, path: str | os.PathLike[str]) -> Path:
        """Register a console log to print when a test fails."""
        self.watched_logs.append(Path(path))
        return Path(path)

    def failure_logs(self, lines: int = 120, echo: bool = True) -> str:
        """Tails of watched logs, QEMU's per-domain logs and libvirtd.log, as one text."""
        paths = [*self.watched_logs, *sorted((self.log_dir / "qemu").glob("*.log")),
                 self.log_dir / "libvirtd.log"]
        return "\n".join(console_log(p, lines, echo) for p in paths if p.exists())

    def daemon_pids(self) -> dict[str, int]:
        return dict(self._started_pids)

    # -- lifecycle

    def __enter__(self) -> RealStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if et is not None:
            self.failure_logs()
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        self._kvm_old = kvm_fix()
        self._make_work()
        netns_add(self.netns)
        self._start_daemons()
        wait_until(self._answers, SOCKET_WAIT_S, f"libvirtd socket {self.socket}")
        ACTIVE.append(self)
        self.timings["up_s"] = time.monotonic() - t0

    def stop(self) -> None:
        """Undo everything; every step runs even when an earlier one fails."""
        t0 = time.monotonic()
        with contextlib.suppress(ValueError):
            ACTIVE.remove(self)
        errors = [e for e in (_attempt(step) for step in (
            self._remove_libvirt_objects, self._stop_daemons, self._stop_namespace_processes,
            self._remove_nft_tables, lambda: netns_delete(self.netns), self._save_caps_cache,
            self._remove_work,
            lambda: kvm_restore(self._kvm_old))) if e]
        self._kvm_old = None
        self.timings["down_s"] = time.monotonic() - t0
        if errors:
            raise HarnessError("test stack teardown was incomplete: " + "; ".join(errors),
                               reason="harness-teardown")

    # -- start steps

    def _make_work(self) -> None:
        self.work.mkdir(mode=0o755, parents=True)
        for sub in PRIVATE_DIRS:
            (self.work / sub).mkdir(mode=0o755)
        (self.work / "state").mkdir(mode=0o755)
        etc = self.work / "etc"
        for conf in Path("/etc/libvirt").glob("*.conf"):
            shutil.copy2(conf, etc / conf.name)
        if Path("/etc/libvirt/nwfilter").is_dir():
            shutil.copytree("/etc/libvirt/nwfilter", etc / "nwfilter")
        with (etc / "libvirtd.conf").open("a") as f:
            f.write("\n# aivm test stack\n" + LIBVIRTD_LOG)
        if self.caps_cache and self.caps_cache.is_dir():
            shutil.copytree(self.caps_cache, self.work / "cache" / "qemu")
        if self.qemu_conf_extra:
            with (etc / "qemu.conf").open("a") as f:
                f.write("\n" + self.qemu_conf_extra + "\n")

    def _start_daemons(self) -> None:
        self.ns_run(["unshare", "--mount", "--propagation", "private", "--",
                     "sh", "-ec", _START_SCRIPT, "sh", str(self.work)],
                    meaning="start virtlogd and libvirtd in the test namespace", timeout=120)
        for daemon in ("virtlogd", "libvirtd"):
            pid = read_pidfile(self.work / f"{daemon}.pid")
            if pid is None:
                raise HarnessError(f"{daemon} wrote no pid file", reason="daemon-start",
                                   hint=f"see {self.log_dir / 'libvirtd.log'}")
            self._started_pids[daemon] = pid

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            self.connect().getVersion()
        except Exception:
            self._conn = None
            return False
        return True

    # -- stop steps

    def _remove_libvirt_objects(self) -> None:
        if not self._started_pids or not pid_alive(self._started_pids.get("libvirtd", -1)):
            return
        conn = self.connect()
        for dom in conn.listAllDomains():
            _remove_domain(dom)
        for net in conn.listAllNetworks():
            _remove_network(net)
        with contextlib.suppress(Exception):
            conn.close()
        self._conn = None

    def _stop_daemons(self) -> None:
        for daemon in ("libvirtd", "virtlogd"):
            pid = self._started_pids.get(daemon)
            if pid is not None and pid_name(pid) == daemon:
                stop_pid(pid)

    def _stop_namespace_processes(self) -> None:
        """Whatever still runs in our namespace was started by us (dnsmasq, qemu, listeners)."""
        for pid in ns_pids(self.netns):
            stop_pid(pid, wait_s=5.0)

    def _remove_nft_tables(self) -> None:
        if not netns_exists(self.netns):
            return
        for family, name in nft_tables(self.netns):
            if name.startswith("aivm_"):
                self.ns_run(["nft", "delete", "table", family, name],
                            meaning=f"remove nft table {family} {name}")

    def _save_caps_cache(self) -> None:
        """Keep libvirt's QEMU probe for the next run (replacing a stale one)."""
        probed = self.work / "cache" / "qemu"
        if self.caps_cache is None or not probed.is_dir() or _same_tree(probed, self.caps_cache):
            return
        self.caps_cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.caps_cache.with_name(f"{self.caps_cache.name}.{os.getpid()}.new")
        stale = self.caps_cache.with_name(f"{self.caps_cache.name}.{os.getpid()}.old")
        shutil.copytree(probed, tmp)
        with contextlib.suppress(FileNotFoundError):
            self.caps_cache.rename(stale)
        tmp.rename(self.caps_cache)
        shutil.rmtree(stale, ignore_errors=True)

    def _remove_work(self) -> None:
        if not self.keep_work and self.work.exists():
            shutil.rmtree(self.work)


def _attempt(step: Any) -> str | None:
    try:
        step()
    except Exception as exc:
        return f"{getattr(step, '__name__', 'step')}: {exc}"
    return None


def _same_tree(a: Path, b: Path) -> bool:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    return b.is_dir() and files(a) == files(b)


def _remove_domain(dom: Any) -> None:
    import libvirt

    if dom.isActive():
        dom.destroy()
    flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
             | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    if dom.isPersistent():
        dom.undefineFlags(flags)


def _remove_network(net: Any) -> None:
    if net.isActive():
        net.destroy()
    if net.isPersistent():
        net.undefine()


def nat_network_xml(name: str, bridge: str, prefix: str = "10.77.0") -> str:
    """A literal libvirt NAT network (for harness checks; aivm renders its own)."""
    return (f"<network><name>{name}</name><forward mode='nat'/>"
            f"<bridge name='{bridge}' stp='on' delay='0'/>"
            f"<ip address='{prefix}.1' netmask='255.255.255.0'><dhcp>"
            f"<range start='{prefix}.100' end='{prefix}.254'/></dhcp></ip></network>")


# ---- a LAN host for firewall tests ------------------------------------------------


@dataclass(frozen=True)
class LanHost:
    """A second namespace joined to the stack's by a veth pair, with a TCP listener."""

    netns: str
    address: str          # the LAN host's address (listener), e.g. 192.168.213.2
    gateway: str          # the stack namespace's end of the veth
    port: int
    listener_pid: int


@contextlib.contextmanager
def lan_host(stack: RealStack, *, subnet_prefix: str = "192.168.213", port: int = 8099,
             veth: str = "aivmlan") -> Iterator[LanHost]:
    """A "host on the LAN" reachable from the stack namespace, removed on exit.

    The veth pair is created inside the stack namespace, so no link ever
    appears in the main namespace. Guests reach it through libvirt's NAT.
    """
    name = f"{stack.netns}-lan"
    host = LanHost(name, f"{subnet_prefix}.2", f"{subnet_prefix}.1", port, 0)
    try:
        netns_add(name)
        _join_lan(stack, host, veth)
        pid = start_listener(name, "0.0.0.0", port, stack.work / f"{name}-listener.log")
        yield LanHost(host.netns, host.address, host.gateway, port, pid)
    finally:
        for pid in ns_pids(name):
            stop_pid(pid, wait_s=5.0)
        netns_delete(name)


def _join_lan(stack: RealStack, host: LanHost, veth: str) -> None:
    stack.ns_run(["ip", "link", "add", f"{veth}0", "type", "veth", "peer", "name", f"{veth}1",
                  "netns", host.netns], meaning="veth pair to the LAN host namespace")
    stack.ns_run(["ip", "addr", "add", f"{host.gateway}/24", "dev", f"{veth}0"])
    stack.ns_run(["ip", "link", "set", f"{veth}0", "up"])
    ns_exec(host.netns, "ip", "addr", "add", f"{host.address}/24", "dev", f"{veth}1")
    ns_exec(host.netns, "ip", "link", "set", f"{veth}1", "up")
    ns_exec(host.netns, "ip", "route", "add", "default", "via", host.gateway)
