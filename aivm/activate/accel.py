"""KVM or QEMU emulation: decide once per boot whether KVM really runs a guest.

`/dev/kvm` existing is not enough. On the machines this project runs on it is
a nested PVM device (`/sys/module/kvm_pvm`, no vmx/svm CPU flags): a normal
guest kernel hangs there or dies with "KVM internal error ... emulation
failure". A tiny real-mode guest *does* run on PVM (measured: the probe
firmware below exits cleanly under `-accel kvm`), so a tiny guest run alone
would say yes wrongly. The decision is therefore:

1. `/dev/kvm` must exist and open read-write for this user;
2. the kvm_pvm module must not be loaded, and the CPU must show vmx or svm;
3. then a 64 KiB firmware that writes to an `isa-debug-exit` port must run
   under `qemu-system-x86_64 -accel kvm` (catches a broken or refused KVM).

The result is cached per boot (keyed by the kernel's boot_id) under the
user state dir, so `aivm up` pays for the probe once. A dry run
(`choose(..., probe=False)`) starts no QEMU and writes no cache: it takes the
cached result, else decides from files alone when they rule KVM out, else
assumes KVM and says so (`AccelChoice.assumed`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aivm import fsutil
from aivm.config.schema import Accel
from aivm.host.facts import ACCEL_CACHE_VERSION as CACHE_VERSION
from aivm.host.facts import BOOT_ID, read_accel_cache
from aivm.host.facts import accel_cache_path as cache_path
from aivm.host.facts import boot_id as _read_boot_id

EXIT_PORT = 0xF4
EXIT_VALUE = 0x31  # isa-debug-exit turns it into exit status (0x31 << 1) | 1 = 99
EXIT_STATUS = (EXIT_VALUE << 1) | 1


@dataclass(frozen=True)
class AccelChoice:
    accel: Accel
    reason: str
    assumed: bool = False  # not probed (a dry run): `accel` is what the plan assumes

    @property
    def note(self) -> str:
        """The one line a dry run prints when the choice is only assumed; else ""."""
        if not self.assumed:
            return ""
        return f"note: accel = auto is not probed yet ({self.reason}): this dry run " \
               f"assumes {self.accel}; `aivm up` runs the probe"

    @property
    def warning(self) -> str:
        """The one line to print when emulation was chosen for want of KVM; else ""."""
        if self.accel is Accel.QEMU and not self.reason.startswith("set "):
            return f"KVM unusable here ({self.reason}): using QEMU emulation, " \
                   "expect ~10x slower boots"
        return ""


@dataclass(frozen=True)
class Host:
    """Where the probe looks; tests point it at a fake tree."""

    dev_kvm: Path = Path("/dev/kvm")
    cpuinfo: Path = Path("/proc/cpuinfo")
    sys_module: Path = Path("/sys/module")
    boot_id: Path = BOOT_ID


GuestRun = Callable[[], str]  # "" when a guest ran under KVM, else why not


def static_problem(host: Host) -> str:
    """Why KVM cannot run a normal guest here, from files alone; "" when it may."""
    if not host.dev_kvm.exists():
        return f"no {host.dev_kvm}"
    try:
        os.close(os.open(host.dev_kvm, os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        return f"cannot open {host.dev_kvm}: {exc.strerror} (join the kvm group)"
    if (host.sys_module / "kvm_pvm").exists():
        return f"{host.dev_kvm} is a nested PVM device (kvm_pvm), which runs no normal guest kernel"
    if not _has_virt_flags(host.cpuinfo):
        return "the CPU shows no vmx/svm virtualization flags"
    return ""


def _has_virt_flags(cpuinfo: Path) -> bool:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags") and {"vmx", "svm"} & set(line.split(":", 1)[-1].split()):
            return True
    return False


def probe_firmware() -> bytes:
    """64 KiB BIOS image: at the reset vector, `mov al, 0x31; out 0xf4, al; hlt`."""
    image = bytearray(b"\xf4" * 65536)  # hlt everywhere
    code = bytes([0xB0, EXIT_VALUE, 0xE6, EXIT_PORT, 0xF4, 0xEB, 0xFD])
    image[0xFFF0:0xFFF0 + len(code)] = code
    return bytes(image)


def guest_runs(accel: str = "kvm", timeout: float = 20.0) -> str:
    """Run the probe firmware under `-accel accel`; "" when it exited as planned."""
    import tempfile

    from aivm import run
    from aivm.errors import CommandError

    with tempfile.TemporaryDirectory(prefix="aivm-accel-") as tmp:
        bios = Path(tmp) / "probe.bin"
        bios.write_bytes(probe_firmware())
        cmd = run.Cmd.of("qemu-system-x86_64", "-accel", accel, "-machine", "pc", "-m", "16",
                         "-nodefaults", "-no-user-config", "-display", "none",
                         "-serial", "none", "-monitor", "none", "-bios", str(bios),
                         "-device", f"isa-debug-exit,iobase={EXIT_PORT:#x},iosize=0x04",
                         meaning=f"check that a guest runs under {accel}")
        try:
            result = run.run(cmd, check=False, timeout=timeout)
        except CommandError as exc:
            return f"probe guest did not run: {exc}"
    if result.returncode == EXIT_STATUS:
        return ""
    tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return f"probe guest under {accel} failed (exit {result.returncode}): {tail}"


def probe(host: Host | None = None, run_guest: GuestRun = guest_runs) -> AccelChoice:
    """Decide now, without the cache."""
    problem = static_problem(host or Host())
    if not problem:
        problem = run_guest()
    if problem:
        return AccelChoice(Accel.QEMU, problem)
    return AccelChoice(Accel.KVM, "KVM ran the probe guest")


def choose(setting: str = "auto", *, host: Host | None = None, cache: Path | None = None,
           refresh: bool = False, run_guest: GuestRun = guest_runs,
           may_probe: bool = True) -> AccelChoice:
    """The accel for the domain node: the configured one, or (for `auto`) the probed one,
    cached per boot. Without `may_probe` (a dry run) nothing runs and nothing is written."""
    if setting in (Accel.KVM, Accel.QEMU):
        return AccelChoice(Accel(setting), f"set to {setting} in the config")
    host = host or Host()
    cache = cache or cache_path()
    boot = _boot_id(host)
    cached = None if refresh else _read_cache(cache, boot)
    if cached is not None:
        return cached
    if not may_probe:
        return without_probe(host)
    choice = probe(host, run_guest)
    _write_cache(cache, boot, choice)
    return choice


def without_probe(host: Host) -> AccelChoice:
    """The choice files alone allow: QEMU when they rule KVM out, else KVM assumed."""
    problem = static_problem(host)
    if problem:
        return AccelChoice(Accel.QEMU, problem)
    return AccelChoice(Accel.KVM, "a dry run starts no QEMU probe", assumed=True)


def _boot_id(host: Host) -> str:
    return _read_boot_id(host.boot_id)


def _read_cache(cache: Path, boot: str) -> AccelChoice | None:
    found = read_accel_cache(cache, boot)
    return AccelChoice(Accel(found[0]), found[1]) if found else None


def _write_cache(cache: Path, boot: str, choice: AccelChoice) -> None:
    if not boot:
        return
    data = {"version": CACHE_VERSION, "boot_id": boot, "accel": str(choice.accel),
            "reason": choice.reason}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(cache, json.dumps(data, indent=1) + "\n", durable=False)
    except OSError:
        pass  # an unwritable state dir only costs a re-probe next time
