"""debootstrap: a bootable Debian guest built from packages, offline-capable, no loop devices.

mmdebstrap (minbase, directory format) builds the root tree; aivm then sets
fstab by label, an empty machine-id, no ssh host keys and a cloud-init
config that reads only the NoCloud seed with `locale: false`. `mkfs.ext4 -d`
turns the tree into a filesystem image without mounting anything, and
`qemu-img convert` makes it `disk.qcow2`. The kernel and initrd are exported
beside it, with `boot.json` for direct kernel boot. Needs root (mmdebstrap's
root mode keeps file ownership right for `mkfs.ext4 -d`).
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
from aivm.recipes import render, values
from aivm.recipes.base import RecipeBase

SUITES = ("bookworm", "trixie", "bullseye", "sid", "testing", "stable")
LABEL = "aivm-root"
CMDLINE = "root=/dev/vda rw console=ttyS0"


class Debootstrap(RecipeBase):
    kind: ClassVar[str] = "debootstrap"
    version: ClassVar[int] = 1
    templates: ClassVar[tuple[str, ...]] = ("debootstrap-cloud.cfg.j2", "debootstrap-fstab.j2")
    defaults: ClassVar[Mapping[str, Any]] = {
        "suite": "bookworm", "packages": PACKAGES, "image_size_gib": 3}
    required: ClassVar[tuple[str, ...]] = ("mirror",)
    tools: ClassVar[tuple[str, ...]] = ("mmdebstrap", "mkfs.ext4", "qemu-img")

    def check(self, node: Node) -> dict[str, Any]:
        p = super().check(node)
        return {
            "suite": values.one_of(p["suite"], SUITES, "suite"),
            "mirror": values.url(p["mirror"], "mirror"),
            "packages": values.packages(p["packages"]),
            "image_size_gib": values.integer(p["image_size_gib"], "image_size_gib", 1, 1024),
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
            bootstrap(rootfs, v)
            configure(rootfs)
            export_boot(rootfs, into)
            run.run(run.Cmd.of("mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", str(rootfs),
                               str(raw), f"{v['image_size_gib']}G",
                               meaning="make the root filesystem image from the tree"))
            run.run(run.Cmd.of("qemu-img", "convert", "-O", "qcow2", str(raw),
                               str(into / "disk.qcow2"), meaning="convert the image to qcow2"))
        finally:
            shutil.rmtree(work, ignore_errors=True)


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
