"""Host facts: what the graph needs to know about this machine, read once per process.

`aivm.config.to_graph.vm_graph(cfg, vm, facts)` is a pure function of the config, the
config's file inputs and these facts: it reads no environment variable, probes no device
and starts no QEMU. Facts that change an artifact are params of the node they change,
so `aivm build --explain` names them when they differ:

    accel       what `accel = "auto"` resolves to here ("kvm" or "qemu"; "" when it was
                not needed, i.e. every VM sets its accel): the domain's `accel`
    virtiofs    whether virtiofsd is installed: the domain's `shared_root` export
    state_dir   per-VM mutable state (AIVM_STATE): the domain's `disk`, `console_log`
                and `shared_root`, the egress `servers_file` / `dns_log`
    nameservers the host's resolv.conf nameservers: the default egress `upstreams`

Detection (`detect`) is the only place that looks at the host; it runs once per process.
The accel is decided by the caller (aivm/model.py: cached per boot, no probe in a dry
run, and only when a VM says `auto`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VIRTIOFSD = ("/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd")
ACCELS = ("kvm", "qemu")


@dataclass(frozen=True)
class HostFacts:
    """The facts of one host that the graph depends on (frozen; passed explicitly)."""

    accel: str                 # "kvm" | "qemu" for accel = "auto"; "" when not decided
    virtiofs: bool
    state_dir: Path
    nameservers: tuple[str, ...] = ()   # resolv.conf's `nameserver` values, as written

    def vm_state_dir(self, vm: str) -> Path:
        return self.state_dir / vm

    def with_accel(self, accel: str) -> HostFacts:
        from dataclasses import replace

        return replace(self, accel=accel)

    def accel_of(self, setting: str) -> str:
        """The accel of a VM whose config says `setting` (kvm, qemu or auto)."""
        return setting if setting in ACCELS else self.accel


ACCEL_CACHE_VERSION = 1
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def accel_cache_path() -> Path:
    from aivm import paths

    return paths.user_state_dir() / "accel.json"


def boot_id(path: Path = BOOT_ID) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def read_accel_cache(cache: Path, boot: str) -> tuple[str, str] | None:
    """(accel, reason) that aivm/activate/accel.py decided on this boot, or None."""
    import json

    try:
        data = json.loads(cache.read_text())
        if data["version"] != ACCEL_CACHE_VERSION or not boot or data["boot_id"] != boot:
            return None
        if data["accel"] not in ACCELS:
            return None
        return str(data["accel"]), str(data["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_accel() -> str:
    """What `accel = "auto"` resolved to on this boot, from the probe's cache; "" when it
    was not probed yet (then aivm/activate/accel.py decides, which may start QEMU)."""
    found = read_accel_cache(accel_cache_path(), boot_id())
    return found[0] if found else ""


# Facts of no particular host, for checks that must not depend on this one (lint asks
# every recipe's check of every node; none of these facts can make a check fail; the
# nameserver is a documentation address, RFC 5737).
NOMINAL = HostFacts(accel="qemu", virtiofs=True, state_dir=Path("/var/lib/libvirt/aivm"),
                    nameservers=("192.0.2.53",))


def virtiofs_available() -> bool:
    """Whether libvirt can start virtiofsd here (Debian 12 ships it in qemu-system-common,
    newer releases in the virtiofsd package). Without it the VM gets no shared-root export."""
    import shutil

    return any(os.path.exists(p) for p in VIRTIOFSD) or shutil.which("virtiofsd") is not None


def read(accel: str = "") -> HostFacts:
    """This host's facts now (uncached), with `accel` as decided by the caller."""
    from aivm import paths

    return HostFacts(accel=accel, virtiofs=virtiofs_available(), state_dir=paths.state_root(),
                     nameservers=nameserver_words())


def nameserver_words(path: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """The values of resolv.conf's `nameserver` lines, unchecked (the egress node keeps the
    IP addresses among them: aivm/recipes/egress.py `addresses`)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ()
    return tuple(w[1] for w in (line.split() for line in lines)
                 if len(w) >= 2 and w[0] == "nameserver")


_DETECTED: dict[str, HostFacts] = {}


def detect() -> HostFacts:
    """This host's facts but the accel, read once per process (per state root, so a test
    that points AIVM_STATE elsewhere gets its own). The caller decides `accel = "auto"`
    (it may probe QEMU; a dry run must not) and sets it with `with_accel`."""
    from aivm import paths

    where = str(paths.state_root())
    if where not in _DETECTED:
        _DETECTED[where] = read()
    return _DETECTED[where]
