"""domain-xml: the libvirt domain of one VM.

q35, a virtio disk at the VM's writable disk path (per-VM state, not the
store), the seed as a read-only cdrom on virtio-scsi (the Debian cloud kernel
has no AHCI), a virtio NIC on the aivm network, a serial console logged to a
file, virtio-rng, memfd shared memory so virtiofs can be attached later, twelve
PCIe root ports (q35 hot-plugs only into free ones; the devices take about seven,
the rest serve `shared` folders and the export added after a booted-state
restore), a `<genid/>` (libvirt picks it), and (when `shared_root` is set) the
VM's one shared-root virtiofs export, present from the first boot so that
attaching a folder never needs a restart.
Boot is direct kernel boot when the base image exported a kernel
(`boot.json`), else from the disk's own bootloader. `firmware` is SeaBIOS
(`bios`) or OVMF (`efi`, Secure Boot and enrolled keys off: an image's GRUB may
be unsigned), as the image's config entry says. The node key and the input
keys sit in `<metadata>` under the aivm namespace, so activation can tell "identical".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from aivm.errors import BuildError
from aivm.graph.node import BuildContext, Node
from aivm.recipes import render, values
from aivm.recipes.base import SHARED_ROOT_TAG, XMLNS, RecipeBase, input_key

ACCELS = ("kvm", "qemu")
FIRMWARES = ("bios", "efi")
DEFAULT_CMDLINE = "root=/dev/vda rw console=ttyS0"


class DomainXml(RecipeBase):
    kind: ClassVar[str] = "domain-xml"
    version: ClassVar[int] = 1
    templates: ClassVar[tuple[str, ...]] = ("domain.xml.j2",)
    defaults: ClassVar[Mapping[str, Any]] = {
        "cpus": 2, "memory_mib": 4096, "shared_root": "", "firmware": "bios"}
    required: ClassVar[tuple[str, ...]] = (
        "name", "accel", "disk", "console_log", "network", "mac")
    inputs: ClassVar[tuple[str, ...]] = ("base", "overlay", "seed", "network")

    def check(self, node: Node) -> dict[str, Any]:
        p = super().check(node)
        return {
            "name": values.name(p["name"], "VM name"),
            "accel": values.one_of(p["accel"], ACCELS, "accel"),
            "cpus": values.integer(p["cpus"], "cpus", *values.CPUS),
            "memory_mib": values.integer(p["memory_mib"], "memory_mib", *values.MEMORY_MIB),
            "disk": values.abs_path(p["disk"], "disk path"),
            "console_log": values.abs_path(p["console_log"], "console log path"),
            "network": values.name(p["network"], "network name"),
            "mac": values.mac(p["mac"]),
            "shared_root": (values.abs_path(p["shared_root"], "shared-root export")
                            if p["shared_root"] else ""),
            "firmware": values.one_of(p["firmware"], FIRMWARES, "firmware"),
        }

    def build(self, ctx: BuildContext, into: Path) -> None:
        v = self.check(ctx.node)
        firmware = v.pop("firmware")
        render.write(into, "domain.xml", "domain.xml.j2", key=ctx.key, xmlns=XMLNS,
                     shared_root_tag=SHARED_ROOT_TAG,
                     input_keys=sorted((r, input_key(p)) for r, p in ctx.inputs.items()),
                     seed=values.abs_path(str(ctx.input("seed") / "seed.iso"), "seed path"),
                     boot=boot_info(ctx.input("base"), firmware), **v)


def boot_info(base: Path, firmware: str = "bios") -> dict[str, str]:
    """How the base image boots under `firmware`: the kernel its boot.json names (with
    absolute paths), or, without boot.json, the bootloader on its disk."""
    out = {"firmware": firmware, "kernel": "", "initrd": "", "cmdline": ""}
    path = base / "boot.json"
    if not path.is_file():
        return out
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise BuildError(f"{path} is not JSON: {exc}", reason="bad-input") from exc
    if data.get("kernel"):
        out["kernel"] = values.abs_path(str(base / data["kernel"]), "kernel path")
        if data.get("initrd"):
            out["initrd"] = values.abs_path(str(base / data["initrd"]), "initrd path")
        out["cmdline"] = _cmdline(data.get("cmdline") or DEFAULT_CMDLINE)
    return out


def _cmdline(value: Any) -> str:
    if not isinstance(value, str) or any(c in value for c in "\n\r\0"):
        raise values.invalid("kernel cmdline", value, "one line of text")
    return value
