"""The bootable disk layout (aivm/recipes/disk_image.py) on a small tree, no mmdebstrap:
the partition table, both filesystems and both boot blobs, then SeaBIOS and OVMF each
running the image's GRUB up to the root filesystem's grub.cfg (QEMU alone, no network)."""

from __future__ import annotations

import json
import os
import select
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from aivm.errors import AivmError, BuildError
from aivm.recipes import disk_image
from aivm.recipes.disk_image import MIB
from aivm.run import Cmd, run

TOOLS = (*disk_image.TOOLS, "blkid", "debugfs", "mtype", "qemu-system-x86_64")

LABEL = "aivm-root"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# GRUB sets $grub_platform to "pc" under SeaBIOS and "efi" under OVMF
PROBE_CFG = "serial --unit=0 --speed=115200\nterminal_output serial\n" \
            "echo aivm-grub-cfg-read-on-$grub_platform\n"


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, disk_image.Layout]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    try:
        disk_image.check_grub()
    except AivmError as exc:
        missing.append(exc.message)
    if missing:
        pytest.skip("needs " + ", ".join(missing))
    work = tmp_path_factory.mktemp("disk")
    rootfs = work / "rootfs"
    (rootfs / "boot" / "grub").mkdir(parents=True)
    (rootfs / "boot" / "grub" / "grub.cfg").write_text(PROBE_CFG)
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "hostname").write_text("probe\n")
    raw = work / "disk.raw"
    lay = disk_image.assemble(rootfs, raw, 200 * MIB, LABEL, work)
    return raw, lay


def test_layout_leaves_the_backup_gpt_and_aligns_every_partition() -> None:
    lay = disk_image.layout(3 << 30)
    assert (lay.bios.start, lay.bios.size) == (MIB, MIB)
    assert lay.esp.start == 2 * MIB and lay.root.start == lay.esp.start + lay.esp.size
    assert all(p.start % MIB == 0 and p.size % MIB == 0 for p in (lay.bios, lay.esp, lay.root))
    assert lay.root.start + lay.root.size <= (3 << 30) - 34 * 512
    assert (3 << 30) - (lay.root.start + lay.root.size) < MIB + 34 * 512


def test_a_disk_too_small_for_a_root_is_refused() -> None:
    with pytest.raises(BuildError) as err:
        disk_image.layout(100 * MIB)
    assert err.value.hint == "raise image_size_gib"


def test_partition_table_names_bios_boot_esp_and_root(disk: tuple[Path, disk_image.Layout]) -> None:
    raw, lay = disk
    table = json.loads(run(Cmd.of("sfdisk", "--json", str(raw))).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    got = [(p["start"] * 512, p["size"] * 512, p["type"], p["name"]) for p in table["partitions"]]
    assert got == [(lay.bios.start, lay.bios.size, disk_image.BIOS_BOOT, "bios-boot"),
                   (lay.esp.start, lay.esp.size, disk_image.ESP, "esp"),
                   (lay.root.start, lay.root.size, disk_image.LINUX_FS, "root")]


def probe(raw: Path, offset: int) -> dict[str, str]:
    out = run(Cmd.of("blkid", "-p", "-o", "export", "-O", str(offset), str(raw))).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_filesystems_sit_in_their_partitions(disk: tuple[Path, disk_image.Layout]) -> None:
    raw, lay = disk
    root, esp = probe(raw, lay.root.start), probe(raw, lay.esp.start)
    assert (root["TYPE"], root["LABEL"]) == ("ext4", LABEL)
    assert (esp["TYPE"], esp["LABEL"]) == ("vfat", "ESP")
    cfg = run(Cmd.of("debugfs", "-R", "cat /boot/grub/grub.cfg",
                     f"{raw}?offset={lay.root.start}")).stdout
    assert cfg == PROBE_CFG
    efi = subprocess.run(["mtype", "-i", f"{raw}@@{lay.esp.start}", "::/EFI/BOOT/BOOTX64.EFI"],
                         capture_output=True, check=True).stdout
    assert efi[:2] == b"MZ" and len(efi) > 100_000   # a PE image: GRUB for x86_64-efi


def test_boot_blobs_point_at_each_other(disk: tuple[Path, disk_image.Layout]) -> None:
    raw, lay = disk
    data = raw.read_bytes()[: lay.bios.start + lay.bios.size]
    mbr, core = data[:512], data[lay.bios.start:]
    grub_boot = (disk_image.GRUB_LIB / "i386-pc" / "boot.img").read_bytes()
    assert mbr[:0x5C] == grub_boot[:0x5C]                       # GRUB's boot.img code
    assert struct.unpack_from("<Q", mbr, 0x5C)[0] == lay.bios.start // 512
    assert mbr[0x1C2] == 0xEE and mbr[510:] == b"\x55\xaa"       # sfdisk's protective MBR kept
    diskboot = (disk_image.GRUB_LIB / "i386-pc" / "diskboot.img").read_bytes()
    assert core[:0x1F4] == diskboot[:0x1F4]                      # core.img starts here
    start, length = struct.unpack_from("<QH", core, 0x1F4)
    assert start == lay.bios.start // 512 + 1                    # the rest follows it
    assert length > 100 and (length + 1) * 512 <= lay.bios.size


def boot_until(argv: list[str], marker: bytes, timeout: float = 240.0) -> bytes:
    """Run QEMU (no NIC, serial on stdout) until `marker` shows up; the output so far."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while marker not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([fd], [], [], 1.0)[0]:
                seen += os.read(fd, 65536)
    finally:
        proc.kill()
        proc.wait()
    return seen


def qemu(raw: Path, *extra: str) -> list[str]:
    return ["qemu-system-x86_64", "-machine", "q35", "-m", "256", "-nographic", "-nic", "none",
            "-drive", f"file={raw},format=raw,if=virtio,snapshot=on", *extra]


@pytest.mark.slow
def test_seabios_runs_the_disks_grub_to_the_root_grub_cfg(
        disk: tuple[Path, disk_image.Layout]) -> None:
    seen = boot_until(qemu(disk[0]), b"aivm-grub-cfg-read-on-pc")
    assert b"aivm-grub-cfg-read-on-pc" in seen, seen[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(not OVMF_CODE.is_file(), reason="OVMF (apt ovmf) is not installed")
def test_ovmf_runs_the_esps_grub_to_the_root_grub_cfg(
        disk: tuple[Path, disk_image.Layout], tmp_path: Path) -> None:
    nvram = tmp_path / "vars.fd"
    shutil.copyfile(OVMF_VARS, nvram)
    seen = boot_until(qemu(disk[0], "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                           "-drive", f"if=pflash,format=raw,file={nvram}"),
                      b"aivm-grub-cfg-read-on-efi")
    assert b"aivm-grub-cfg-read-on-efi" in seen, seen[-2000:]


# -- config: `layout` picks the recipe, `firmware` reaches the domain of any image

def test_layout_disk_builds_the_disk_recipe_and_firmware_reaches_the_domain(
        ssh_key: Path, state_root: Path) -> None:
    from aivm.config.schema import Firmware, Image, ImageLayout, ImageSource
    from aivm.config.to_graph import vm_graph
    from aivm.host.facts import read as read_facts
    from tests.recipes.conftest import sample_config

    image = Image(name="debian", source=ImageSource.DEBOOTSTRAP, layout=ImageLayout.DISK,
                  firmware=Firmware.EFI, mirror="http://deb.debian.org/debian")
    cfg = sample_config(ssh_key, image)
    nodes = vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
    assert nodes["image.debian"].kind == "debootstrap-disk"
    assert nodes["devbox.domain"].params["firmware"] == "efi"
    fetched = Image(name="cloud", url="https://example.org/cloud.img", sha256="a" * 64,
                    firmware=Firmware.EFI)
    cfg = sample_config(ssh_key, fetched)
    nodes = vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
    assert nodes["image.cloud"].kind == "fetch"
    assert nodes["devbox.domain"].params["firmware"] == "efi"


def test_bios_firmware_keeps_existing_domain_keys(ssh_key: Path, state_root: Path,
                                                   tmp_path: Path) -> None:
    from dataclasses import replace

    from aivm.config.schema import Firmware
    from aivm.config.to_graph import vm_graph
    from aivm.host.facts import read as read_facts
    from tests.recipes.conftest import sample_config
    from tests.recipes.helpers import keys_of, store_at

    cfg = sample_config(ssh_key)
    nodes = vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
    domain = nodes["devbox.domain"]
    assert domain.params["firmware"] == "bios"
    store = store_at(tmp_path / "store")
    before = {**nodes, "devbox.domain": replace(domain, params={
        k: v for k, v in domain.params.items() if k != "firmware"})}
    assert keys_of(nodes, store) == keys_of(before, store)   # the default is left out
    efi = sample_config(ssh_key, replace(cfg.images[0], firmware=Firmware.EFI))
    changed = {n for n, k in keys_of(vm_graph(efi, efi.vms[0], read_facts("qemu")), store).items()
               if k != keys_of(nodes, store)[n]}
    # the domain boots with it; the VM's packages layer is built by a guest booted the same
    # way (a provision param), and the overlay sits on that layer
    assert changed == {"devbox.domain", "devbox.packages", "devbox.overlay"}


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("firmware", "uefi", "one of 'bios', 'efi'"), ("layout", "iso", "one of 'kernel', 'disk'")])
def test_bad_layout_or_firmware_is_a_config_error(key: str, value: str, expected: str) -> None:
    from aivm.config.load import loads
    from aivm.errors import ConfigError

    text = f'[[images]]\nname = "d"\nsource = "debootstrap"\n{key} = "{value}"\n'
    with pytest.raises(ConfigError) as err:
        loads(text)
    assert f"{key} must be {expected}" in str(err.value)
