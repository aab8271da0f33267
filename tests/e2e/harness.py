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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aivm.run import Cmd, Result, run
from tests.e2e.lanhost import LanHost, lan_host
from tests.e2e.netns import (
    HarnessError,
    KvmMode,
    console_log,
    kvm_fix,
    kvm_restore,
    netns_add,
    netns_delete,
    netns_exists,
    nft_tables,
    ns_exec,
    ns_pids,
    pid_alive,
    pid_name,
    read_pidfile,
    start_listener,
    stop_pid,
    wait_until,
)

__all__ = ["ACTIVE", "HarnessError", "LanHost", "RealStack", "console_log", "lan_host",
           "nat_network_xml", "netns_exists", "nft_tables", "ns_exec", "ns_pids", "pid_alive",
           "pid_name", "remove_domain", "remove_network", "start_listener",
           "unavailable_reason"]

PRIVATE_DIRS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}

# Runs as: nsenter --net=/run/netns/NS unshare --mount --propagation private sh -ec SCRIPT
# sh WORK SUB:DIR...; each private dir is bound over libvirt's own, then both daemons
# start in this mount namespace (they keep it alive after sh exits). `nsenter`, not
# `ip netns exec`: the latter remounts /sys for the namespace, which hides
# /sys/fs/cgroup, and libvirtd 9.0 then has no cgroups and crashes on a live virtiofs
# attach. With the host's /sys the daemons can hot-plug virtiofs (the `shared` mode's
# live path, the export added after a booted-state restore).
_START_SCRIPT = """
work=$1; shift
for pair; do
    mkdir -p "${pair#*:}"
    mount --bind "$work/${pair%%:*}" "${pair#*:}"
done
virtlogd -d -p "$work/virtlogd.pid"
libvirtd -d -p "$work/libvirtd.pid"
"""

# libvirtd probes QEMU on first start (7.7 s here); a probe result kept across
# runs brings that to 0.1 s. libvirt itself discards it when QEMU, libvirt or
# the kernel changes, so a stale copy costs one probe, never a wrong answer.
CAPS_CACHE = Path("/var/tmp/aivm-realstack/qemu-cache")
LIBVIRTD_LOG = 'log_outputs="3:file:/var/log/libvirt/libvirtd.log"\n'
SOCKET_WAIT_S = 60.0

_counter = itertools.count()
ACTIVE: list[RealStack] = []   # started and not yet stopped (conftest prints their logs)



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
        env = {"AIVM_NETNS": self.netns, "LIBVIRT_DEFAULT_URI": self.uri,
               "AIVM_LIBVIRT_URI": self.uri, "AIVM_STATE": str(self.work / "state")}
        libvirtd = self.daemon_pids().get("libvirtd")
        if libvirtd:  # host mounts for virtiofs must happen in the daemons' mount namespace
            env["AIVM_HYPERVISOR_PID"] = str(libvirtd)
        return env

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
        run(Cmd.of("nsenter", f"--net=/run/netns/{self.netns}",
                   "unshare", "--mount", "--propagation", "private", "--",
                   "sh", "-ec", _START_SCRIPT, "sh", str(self.work),
                   *(f"{sub}:{target}" for sub, target in PRIVATE_DIRS.items()),
                   meaning="start virtlogd and libvirtd in the test namespace (host /sys)",
                   root=True), timeout=120)
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
            remove_domain(dom)
        for net in conn.listAllNetworks():
            remove_network(net)
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
        try:
            with contextlib.suppress(FileNotFoundError):
                self.caps_cache.rename(stale)
            tmp.rename(self.caps_cache)
        except OSError:   # a stack in another process saved its probe first: keep that one
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
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


def remove_domain(dom: Any) -> None:
    """Destroy and undefine a libvirt domain with everything libvirt keeps beside it."""
    import libvirt

    if dom.isActive():
        dom.destroy()
    flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
             | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    if dom.isPersistent():
        dom.undefineFlags(flags)


def remove_network(net: Any) -> None:
    """Destroy and undefine a libvirt network."""
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
