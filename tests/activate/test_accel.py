from __future__ import annotations

import os
from pathlib import Path

import pytest

from aivm.activate import accel
from aivm.activate.accel import Host
from aivm.config.schema import Accel

VMX = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse2\n"
NOFLAGS = "processor\t: 0\nflags\t\t: fpu vme de pse sse2\n"


def fake_host(tmp_path: Path, *, kvm: bool = True, cpuinfo: str = VMX, pvm: bool = False,
              boot: str = "boot-1") -> Host:
    (tmp_path / "sys" / "module" / "kvm").mkdir(parents=True, exist_ok=True)
    if pvm:
        (tmp_path / "sys" / "module" / "kvm_pvm").mkdir()
    if kvm:
        (tmp_path / "kvm").write_text("")  # a plain file opens O_RDWR like a usable device
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    (tmp_path / "boot_id").write_text(boot + "\n")
    return Host(tmp_path / "kvm", tmp_path / "cpuinfo", tmp_path / "sys" / "module",
                tmp_path / "boot_id")


class Guest:
    def __init__(self, answer: str = "") -> None:
        self.answer, self.runs = answer, 0

    def __call__(self) -> str:
        self.runs += 1
        return self.answer


def test_kvm_when_static_checks_pass_and_the_probe_guest_runs(tmp_path) -> None:
    guest = Guest()
    choice = accel.probe(fake_host(tmp_path), guest)
    assert choice.accel is Accel.KVM and guest.runs == 1
    assert choice.warning == ""


@pytest.mark.parametrize(("kw", "expect"), [
    ({"kvm": False}, "no "),
    ({"pvm": True}, "nested PVM device (kvm_pvm)"),
    ({"cpuinfo": NOFLAGS}, "no vmx/svm"),
])
def test_static_problems_choose_qemu_without_running_a_guest(tmp_path, kw, expect) -> None:
    guest = Guest()
    choice = accel.probe(fake_host(tmp_path, **kw), guest)
    assert choice.accel is Accel.QEMU and expect in choice.reason
    assert guest.runs == 0
    assert choice.warning.startswith("KVM unusable here (")
    assert choice.warning.endswith("): using QEMU emulation, expect ~10x slower boots")


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens any file")
def test_unopenable_dev_kvm_is_a_problem(tmp_path) -> None:
    host = fake_host(tmp_path)
    host.dev_kvm.chmod(0)
    assert "cannot open" in accel.static_problem(host)


def test_failed_probe_guest_chooses_qemu(tmp_path) -> None:
    choice = accel.probe(fake_host(tmp_path), Guest("probe guest under kvm failed (exit 1): x"))
    assert choice.accel is Accel.QEMU and "exit 1" in choice.reason


def test_choice_is_cached_per_boot(tmp_path) -> None:
    cache, guest = tmp_path / "state" / "accel.json", Guest()
    first = accel.choose(host=fake_host(tmp_path / "a"), cache=cache, run_guest=guest)
    again = accel.choose(host=fake_host(tmp_path / "a"), cache=cache, run_guest=guest)
    assert first == again and guest.runs == 1
    rebooted = fake_host(tmp_path / "b", pvm=True, boot="boot-2")
    after = accel.choose(host=rebooted, cache=cache, run_guest=guest)
    assert after.accel is Accel.QEMU and "kvm_pvm" in after.reason
    assert accel.choose(host=fake_host(tmp_path / "a"), cache=cache, run_guest=guest,
                        refresh=True).accel is Accel.KVM
    assert guest.runs == 2


def test_corrupt_cache_is_reprobed(tmp_path) -> None:
    cache, guest = tmp_path / "accel.json", Guest()
    cache.write_text("{not json")
    assert accel.choose(host=fake_host(tmp_path / "h"), cache=cache, run_guest=guest).accel \
        is Accel.KVM
    assert guest.runs == 1


def test_configured_accel_skips_the_probe(tmp_path) -> None:
    guest = Guest()
    choice = accel.choose("qemu", host=fake_host(tmp_path, pvm=True), run_guest=guest)
    assert (choice.accel, choice.warning, guest.runs) == (Accel.QEMU, "", 0)
    assert accel.choose("kvm", run_guest=guest).accel is Accel.KVM


def test_probe_firmware_exits_as_planned_under_tcg() -> None:
    from aivm import run

    if run.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    assert accel.guest_runs("tcg") == ""
    assert "failed (exit 1)" in accel.guest_runs("no-such-accel")


def test_this_machine(tmp_path) -> None:
    """On the project's machines /dev/kvm is a nested PVM device: emulation must be chosen."""
    if not Path("/sys/module/kvm_pvm").exists():
        pytest.skip("not a PVM host")
    choice = accel.choose(cache=tmp_path / "accel.json")
    assert choice.accel is Accel.QEMU and "kvm_pvm" in choice.reason


def test_dry_run_choice_starts_no_guest_and_writes_no_cache(tmp_path) -> None:
    """`may_probe=False` (a dry run): KVM is assumed and said so; nothing runs or is written."""
    guest, cache = Guest(), tmp_path / "state" / "accel.json"
    choice = accel.choose("auto", host=fake_host(tmp_path), cache=cache, run_guest=guest,
                          may_probe=False)
    assert choice.accel is Accel.KVM and choice.assumed
    assert guest.runs == 0 and not cache.exists() and not cache.parent.exists()
    assert choice.note == ("note: accel = auto is not probed yet (a dry run starts no QEMU "
                           "probe): this dry run assumes kvm; `aivm up` runs the probe")
    assert choice.warning == ""


def test_dry_run_choice_decides_from_files_or_takes_the_cache(tmp_path) -> None:
    guest, cache = Guest(), tmp_path / "accel.json"
    pvm = accel.choose("auto", host=fake_host(tmp_path / "a", pvm=True), cache=cache,
                       run_guest=guest, may_probe=False)
    assert pvm.accel is Accel.QEMU and not pvm.assumed and "kvm_pvm" in pvm.reason
    host = fake_host(tmp_path / "b")
    probed = accel.choose("auto", host=host, cache=cache, run_guest=Guest("refused"))
    assert probed.accel is Accel.QEMU and cache.exists()
    again = accel.choose("auto", host=host, cache=cache, run_guest=guest, may_probe=False)
    assert again == probed and guest.runs == 0
