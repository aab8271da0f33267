"""A partitioned disk that boots by itself under SeaBIOS and UEFI, made from a root tree
without loop devices or mounts (the back half of the debootstrap-disk recipe).

    sector 0   protective MBR holding GRUB's boot.img (i386-pc), pointing at p1
    p1  1 MiB  BIOS boot partition: GRUB's core.img (i386-pc)
    p2 64 MiB  EFI system partition (FAT16): EFI/BOOT/BOOTX64.EFI, a standalone GRUB
    p3 rest    the root filesystem (ext4, found by its label); last, so growpart can grow it

One image serves both firmwares, as distributions' cloud images do. Both GRUBs carry
their modules and a two-line early config: find the root filesystem by label, then
read `/boot/grub/grub.cfg` there, which boots `/vmlinuz` and `/initrd.img` (the
symlinks Debian's kernel packages keep current, so a kernel upgraded in the guest
boots next time). Everything is written into the image file: `sfdisk` partitions the
plain file, `mkfs.ext4 -E offset` and `mkfs.vfat --offset` make the filesystems in
place, mtools copies into the ESP through `-i image@@offset`, and the two boot blobs are
written at their sectors with the pointers `grub-bios-setup` would set.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from aivm import run
from aivm.errors import AivmError, BuildError

SECTOR = 512
MIB = 1 << 20
GPT_BACKUP_SECTORS = 33          # the backup GPT at the end: 32 sectors of entries + header
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_FS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GRUB_LIB = Path("/usr/lib/grub")
GRUB_PLATFORMS = {"i386-pc": "grub-pc-bin", "x86_64-efi": "grub-efi-amd64-bin"}
GRUB_MODULES = ("part_gpt", "ext2", "search", "search_label", "normal", "linux", "configfile",
                "echo", "test", "serial", "terminal", "boot")
PLATFORM_MODULES = {"i386-pc": ("biosdisk",), "x86_64-efi": ("efi_gop",)}
TOOLS = ("sfdisk", "mkfs.vfat", "mmd", "mcopy", "grub-mkimage")
# grub-bios-setup's pointers (grub/i386/pc/boot.h): where boot.img finds core.img, and
# the first blocklist entry at the end of core.img's first sector (diskboot.img)
KERNEL_SECTOR, DRIVE_CHECK, BLOCKLIST_START, MBR_CODE = 0x5C, 0x66, 0x1F4, 440


@dataclass(frozen=True)
class Part:
    start: int                       # bytes from the start of the disk, MiB-aligned
    size: int                        # bytes

    @property
    def sector(self) -> int:
        return self.start // SECTOR


@dataclass(frozen=True)
class Layout:
    size: int
    bios: Part
    esp: Part
    root: Part


def layout(size: int) -> Layout:
    """The partitions of a disk of `size` bytes; the root takes what the others leave."""
    bios, esp = Part(MIB, MIB), Part(2 * MIB, 64 * MIB)
    root_start = esp.start + esp.size
    usable_end = size - (GPT_BACKUP_SECTORS + 1) * SECTOR
    root = Part(root_start, (usable_end - root_start) // MIB * MIB)
    if root.size < 64 * MIB:
        raise BuildError(f"a disk of {size} bytes leaves no room for the root filesystem",
                         hint="raise image_size_gib", reason="invalid-param")
    return Layout(size, bios, esp, root)


def check_grub() -> None:
    """GRUB's BIOS and EFI module folders are files, not tools: check them up front."""
    for platform, package in GRUB_PLATFORMS.items():
        if not (GRUB_LIB / platform / "normal.mod").is_file():
            raise AivmError(f"GRUB for {platform} is not installed ({GRUB_LIB / platform})",
                            hint=f"apt-get install {package}", reason="missing-tool")


def assemble(rootfs: Path, raw: Path, size: int, label: str, work: Path) -> Layout:
    """Write the bootable disk image `raw` (a sparse file of `size` bytes) from `rootfs`."""
    lay = layout(size)
    with open(raw, "wb") as fh:
        fh.truncate(size)
    partition(raw, lay)
    make_root(rootfs, raw, lay.root, label)
    make_esp(raw, lay.esp, grub_image("x86_64-efi", work, label))
    install_bios_boot(raw, lay.bios, grub_image("i386-pc", work, label))
    return lay


def partition(raw: Path, lay: Layout) -> None:
    rows = ((lay.bios, BIOS_BOOT, "bios-boot"), (lay.esp, ESP, "esp"), (lay.root, LINUX_FS, "root"))
    script = "label: gpt\n" + "".join(
        f"start={p.sector}, size={p.size // SECTOR}, type={t}, name={n}\n" for p, t, n in rows)
    run.run(run.Cmd.of("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(raw),
                       stdin=script, meaning="write the GPT partition table into the image"))


def make_root(rootfs: Path, raw: Path, part: Part, label: str) -> None:
    run.run(run.Cmd.of("mkfs.ext4", "-q", "-F", "-L", label, "-E", f"offset={part.start}",
                       "-d", str(rootfs), str(raw), f"{part.size // 1024}k",
                       meaning="make the root filesystem in its partition, from the tree"))


def make_esp(raw: Path, part: Part, bootx64: Path) -> None:
    run.run(run.Cmd.of("mkfs.vfat", "-F", "16", "-n", "ESP", "--offset", str(part.sector),
                       str(raw), str(part.size // 1024),
                       meaning="make the EFI system partition's FAT filesystem"))
    image = f"{raw}@@{part.start}"
    run.run(run.Cmd.of("mmd", "-i", image, "::/EFI", "::/EFI/BOOT",
                       meaning="make EFI/BOOT on the EFI system partition"))
    run.run(run.Cmd.of("mcopy", "-i", image, str(bootx64), "::/EFI/BOOT/BOOTX64.EFI",
                       meaning="copy GRUB to the removable-media boot path of the ESP"))


def grub_image(platform: str, work: Path, label: str) -> Path:
    """A GRUB image with its modules built in that reads the root filesystem's grub.cfg."""
    early = work / "grub-early.cfg"
    early.write_text(f"search --no-floppy --label {label} --set=root\n"
                     "set prefix=($root)/boot/grub\n")
    out = work / f"grub-{platform}.img"
    run.run(run.Cmd.of("grub-mkimage", "-O", platform, "-d", str(GRUB_LIB / platform),
                       "-p", "/boot/grub", "-c", str(early), "-o", str(out),
                       *PLATFORM_MODULES[platform], *GRUB_MODULES,
                       meaning=f"build the {platform} GRUB image"))
    return out


def install_bios_boot(raw: Path, part: Part, core_img: Path) -> None:
    """core.img into the BIOS boot partition, boot.img into the MBR's code area."""
    core = bytearray(core_img.read_bytes())
    if len(core) > part.size:
        raise BuildError(f"GRUB's core.img ({len(core)} bytes) does not fit the BIOS boot "
                         f"partition ({part.size} bytes)", reason="bad-input")
    struct.pack_into("<Q", core, BLOCKLIST_START, part.sector + 1)
    boot = bytearray((GRUB_LIB / "i386-pc" / "boot.img").read_bytes())
    struct.pack_into("<Q", boot, KERNEL_SECTOR, part.sector)
    boot[DRIVE_CHECK:DRIVE_CHECK + 2] = b"\x90\x90"   # trust the BIOS's boot drive (a disk)
    with open(raw, "r+b") as fh:
        fh.seek(part.start)
        fh.write(core)
        fh.seek(0)
        fh.write(boot[:MBR_CODE])                     # keep the protective partition table
