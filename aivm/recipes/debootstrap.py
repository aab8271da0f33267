"""debootstrap: a bootable Debian guest built from packages, offline-capable, no loop devices.

mmdebstrap (minbase, directory format) builds the root tree; aivm then sets
fstab by label, an empty machine-id, no ssh host keys and a cloud-init
config that reads only the NoCloud seed with `locale: false`. `mkfs.ext4 -d`
turns the tree into a filesystem image without mounting anything, and
`qemu-img convert` makes it `disk.qcow2`. The kernel and initrd are exported
beside it, with `boot.json` for direct kernel boot. Needs root (mmdebstrap's
root mode keeps file ownership right for `mkfs.ext4 -d`).

debootstrap-disk (`layout = "disk"`) makes the same tree into a disk that boots by
itself, the way distributions ship cloud images: GPT, GRUB for SeaBIOS and for UEFI,
the kernel inside (aivm/recipes/disk_image.py), cloud-guest-utils so cloud-init grows
the root partition to the VM's disk, and a compressed qcow2 (about 200 MiB for the
default packages, against 530 MiB uncompressed). No boot.json: the domain boots it
from its disk.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from aivm import run
from aivm.config.schema import DEBOOTSTRAP_PACKAGES as PACKAGES
from aivm.errors import AivmError, BuildError
from aivm.graph.node import BuildContext, Node
from aivm.recipes import disk_image, render, values
from aivm.recipes.base import RecipeBase

SUITES = ("bookworm", "trixie", "bullseye", "sid", "testing", "stable")
LABEL = "aivm-root"
CMDLINE = "root=/dev/vda rw console=ttyS0"


class Debootstrap(RecipeBase):
    kind: ClassVar[str] = "debootstrap"
    version: ClassVar[int] = 2  # 2: masked units (mask_units)
    templates: ClassVar[tuple[str, ...]] = ("debootstrap-cloud.cfg.j2", "debootstrap-fstab.j2")
    defaults: ClassVar[Mapping[str, Any]] = {
        "suite": "bookworm", "packages": PACKAGES, "image_size_gib": 3}
    required: ClassVar[tuple[str, ...]] = ("mirror",)
    tools: ClassVar[tuple[str, ...]] = ("mmdebstrap", "mkfs.ext4", "qemu-img")
    extra_packages: ClassVar[tuple[str, ...]] = ()
    convert_flags: ClassVar[tuple[str, ...]] = ()

    def check(self, node: Node) -> dict[str, Any]:
        p = super().check(node)
        return {
            "suite": values.one_of(p["suite"], SUITES, "suite"),
            "mirror": values.url(p["mirror"], "mirror"),
            "packages": values.packages(p["packages"]),
            "image_size_gib": values.integer(p["image_size_gib"], "image_size_gib",
                                             *values.IMAGE_SIZE_GIB),
        }

    def preflight(self, node: Node) -> None:
        super().preflight(node)
        if os.geteuid() != 0:
            raise AivmError("building a debootstrap image needs root",
                            hint="run the build as root, or use a fetched cloud image",
                            reason="needs-root")

    def build(self, ctx: BuildContext, into: Path) -> None:
        v = self.check(ctx.node)
        work = into / ".work"
        rootfs, raw = work / "rootfs", work / "root.raw"
        work.mkdir()
        try:
            packages = tuple(dict.fromkeys(v["packages"] + self.extra_packages))
            bootstrap(rootfs, {**v, "packages": packages})
            configure(rootfs)
            self.make_raw(rootfs, raw, into, v["image_size_gib"] << 30)
            run.run(run.Cmd.of("qemu-img", "convert", *self.convert_flags, "-O", "qcow2",
                               str(raw), str(into / "disk.qcow2"),
                               meaning="convert the image to qcow2"))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def make_raw(self, rootfs: Path, raw: Path, into: Path, size: int) -> None:
        """The root filesystem alone as the disk; kernel and initrd beside it."""
        export_boot(rootfs, into)
        run.run(run.Cmd.of("mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", str(rootfs),
                           str(raw), f"{size >> 30}G",
                           meaning="make the root filesystem image from the tree"))


class DebootstrapDisk(Debootstrap):
    """The same tree as a GPT disk with GRUB for BIOS and UEFI and the kernel inside."""

    kind: ClassVar[str] = "debootstrap-disk"
    version: ClassVar[int] = 2  # 2: masked units (mask_units)
    templates: ClassVar[tuple[str, ...]] = Debootstrap.templates + ("debootstrap-grub.cfg.j2",)
    tools: ClassVar[tuple[str, ...]] = Debootstrap.tools + disk_image.TOOLS
    extra_packages: ClassVar[tuple[str, ...]] = ("cloud-guest-utils",)  # growpart
    convert_flags: ClassVar[tuple[str, ...]] = ("-c",)   # compressed, as distributions ship

    def preflight(self, node: Node) -> None:
        super().preflight(node)
        disk_image.check_grub()

    def make_raw(self, rootfs: Path, raw: Path, into: Path, size: int) -> None:
        grub = rootfs / "boot" / "grub"
        grub.mkdir(parents=True, exist_ok=True)
        (grub / "grub.cfg").write_text(render.render("debootstrap-grub.cfg.j2", label=LABEL))
        disk_image.assemble(rootfs, raw, size, LABEL, raw.parent)


def bootstrap(rootfs: Path, v: Mapping[str, Any]) -> None:
    run.run(run.Cmd.of(
        "mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", "--format=directory",
        "--include=" + ",".join(v["packages"]), v["suite"], str(rootfs), v["mirror"],
        meaning=f"build a Debian {v['suite']} root tree with mmdebstrap"), timeout=1800)


def configure(rootfs: Path) -> None:
    """Make the tree a clean, first-boot guest that only cloud-init personalises."""
    etc = rootfs / "etc"
    (etc / "fstab").write_text(render.render("debootstrap-fstab.j2", label=LABEL))
    (etc / "machine-id").write_text("")
    dbus_id = rootfs / "var/lib/dbus/machine-id"
    if dbus_id.is_file() and not dbus_id.is_symlink():
        dbus_id.unlink()
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    (etc / "hostname").write_text("localhost\n")
    cfg = etc / "cloud/cloud.cfg.d"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "90-aivm.cfg").write_text(render.render("debootstrap-cloud.cfg.j2"))
    mask_units(etc / "systemd/system")


# What a sandbox guest does not need at boot or later: e2scrub_reap alone took 32 s of a
# 118 s emulated boot; the timers wake a short-lived guest for maintenance it never needs.
MASKED_UNITS = ("e2scrub_reap.service", "e2scrub_all.timer", "apt-daily.timer",
                "apt-daily-upgrade.timer", "man-db.timer", "fstrim.timer",
                "dpkg-db-backup.timer")


def mask_units(system: Path) -> None:
    """`systemctl mask`, offline: a link to /dev/null in /etc/systemd/system per unit."""
    system.mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        link = system / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")


def export_boot(rootfs: Path, into: Path) -> None:
    """Copy the newest kernel and its initrd out of /boot and describe them in boot.json."""
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise BuildError("the image has no kernel in /boot",
                         hint="include a linux-image package in packages", reason="no-kernel")
    kernel = kernels[-1]
    initrd = rootfs / "boot" / ("initrd.img-" + kernel.name.removeprefix("vmlinuz-"))
    if not initrd.is_file():
        raise BuildError(f"no initrd for {kernel.name}",
                         hint="include initramfs-tools in packages", reason="no-kernel")
    shutil.copyfile(kernel, into / "vmlinuz")
    shutil.copyfile(initrd, into / "initrd.img")
    (into / "boot.json").write_text(json.dumps(
        {"kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": CMDLINE}, indent=2) + "\n")
