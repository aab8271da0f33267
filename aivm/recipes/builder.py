"""The throw-away builder guest of a provision node: QEMU run directly, no root, no libvirt.

The builder boots a thin qcow2 overlay (the future entry's `disk.qcow2`) the
way the VM will boot it: direct kernel boot when the input exported a kernel
(`boot.json`), else its firmware. Its NIC is QEMU user-mode networking with
`restrict=on`: the guest reaches nothing (no host loopback through 10.0.2.2,
no LAN, no 169.254.169.254) except one `guestfwd` address, 10.0.2.100:3128,
where each connection runs `fence_proxy.py`, an HTTP(S) proxy that allows
public addresses and the declared `host:port` targets only. The build seed
is a cidata cdrom on virtio-scsi; ttyS0 is the console log, ttyS1 the
provisioning log. The guest powers itself off when done; QEMU then exits
(`-no-reboot`), and the result is the marker line on ttyS1.

KVM when usable, emulation otherwise: the same per-boot decision as a VM's
`accel = auto` (aivm/activate/accel.py), a host fact, not part of the key:
the disk a build writes does not depend on it.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aivm import run
from aivm.errors import BuildError

PROXY_ADDR, PROXY_PORT = "10.0.2.100", 3128
MAC = "52:54:00:a1:b0:01"
MEMORY_MIB = 1024
CPUS = 2
TIMEOUT_S = 3600.0
OVMF = (("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
        ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"))
RESULT = re.compile(r"^AIVM-PROVISION-RESULT (\S+) (ok|failed (\S+) (\d+))\s*$", re.M)
FENCE_PROXY = Path(__file__).resolve().parent / "fence_proxy.py"


@dataclass(frozen=True)
class BuilderRun:
    """Everything one builder boot needs, as files in a work directory."""

    disk: Path
    seed: Path
    boot: Mapping[str, str]        # domain_xml.boot_info of the input
    console_log: Path
    provision_log: Path
    fence_log: Path
    allow: tuple[str, ...]         # declared host:port targets
    accel: str = "qemu"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    step: str = ""                 # "003" or "reset" when failed
    exit_code: int = 0


def _opt(value: str) -> str:
    """A value inside a QEMU -option list: commas are doubled."""
    return value.replace(",", ",,")


def netdev(r: BuilderRun) -> str:
    proxy = [sys.executable, "-I", str(FENCE_PROXY), "--log", str(r.fence_log)]
    for target in r.allow:
        proxy += ["--allow", target]
    fwd = f"tcp:{PROXY_ADDR}:{PROXY_PORT}-cmd:{shlex.join(proxy)}"
    return f"user,id=net0,restrict=on,guestfwd={_opt(fwd)}"


def boot_args(boot: Mapping[str, str], work: Path) -> list[str]:
    if boot.get("kernel"):
        args = ["-kernel", boot["kernel"], "-append", boot["cmdline"]]
        return args + (["-initrd", boot["initrd"]] if boot.get("initrd") else [])
    if boot.get("firmware") == "efi":
        import shutil

        found = next(((c, v) for c, v in OVMF if Path(c).is_file() and Path(v).is_file()), None)
        if found is None:
            raise BuildError("the input image boots with UEFI and no OVMF firmware is installed",
                             hint="apt-get install ovmf", reason="missing-tool")
        shutil.copyfile(found[1], work / "efivars.fd")
        return ["-drive", f"if=pflash,format=raw,readonly=on,file={_opt(found[0])}",
                "-drive", f"if=pflash,format=raw,file={_opt(str(work / 'efivars.fd'))}"]
    return []


def argv(r: BuilderRun) -> list[str]:
    accel = ["-accel", "kvm", "-cpu", "host"] if r.accel == "kvm" else ["-accel", "tcg"]
    return [
        "qemu-system-x86_64", "-name", "aivm-provision-builder", "-machine", "q35", *accel,
        "-m", str(MEMORY_MIB), "-smp", str(CPUS), "-nodefaults", "-no-user-config",
        "-display", "none", "-no-reboot", *boot_args(r.boot, r.console_log.parent),
        "-drive", f"file={_opt(str(r.disk))},if=virtio,format=qcow2,discard=unmap",
        "-device", "virtio-scsi-pci,id=scsi0",
        "-drive", f"file={_opt(str(r.seed))},if=none,id=seed,format=raw,media=cdrom,readonly=on",
        "-device", "scsi-cd,drive=seed,bus=scsi0.0",
        "-netdev", netdev(r), "-device", f"virtio-net-pci,netdev=net0,mac={MAC}",
        "-device", "virtio-rng-pci",
        "-serial", f"file:{r.console_log}", "-serial", f"file:{r.provision_log}",
    ]


def boot(r: BuilderRun, timeout: float = TIMEOUT_S) -> run.Result:
    """Run the builder until the guest powers off (or the timeout kills it)."""
    cmd = run.Cmd.of(*argv(r), in_netns=True,
                     meaning="boot the provision builder guest and run its steps")
    return run.run(cmd, check=False, timeout=timeout)


def outcome(log_text: str, nonce: str) -> Outcome | None:
    """The builder's verdict from its provisioning log; None when it printed none."""
    for match in RESULT.finditer(log_text):
        if match.group(1) != nonce:
            continue
        if match.group(2) == "ok":
            return Outcome(True)
        return Outcome(False, match.group(3), int(match.group(4)))
    return None


def tail(text: str, lines: int = 20) -> str:
    kept = [ln.rstrip("\r") for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def host_accel() -> str:
    """kvm or qemu, as `accel = auto` decides for VMs (cached per boot; probes once)."""
    from aivm.activate import accel

    return str(accel.choose("auto").accel.value)


def steps_summary(titles: Sequence[str]) -> str:
    return "; ".join(f"{i:03d} {t}" for i, t in enumerate(titles))
