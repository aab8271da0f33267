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
    nameservers: tuple[str, ...] = ()

    def vm_state_dir(self, vm: str) -> Path:
        return self.state_dir / vm

    def with_accel(self, accel: str) -> HostFacts:
        from dataclasses import replace

        return replace(self, accel=accel)

    def accel_of(self, setting: str) -> str:
        """The accel of a VM whose config says `setting` (kvm, qemu or auto)."""
        return setting if setting in ACCELS else self.accel


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
    from aivm.recipes.egress import resolv_nameservers

    return HostFacts(accel=accel, virtiofs=virtiofs_available(), state_dir=paths.state_root(),
                     nameservers=resolv_nameservers())


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
