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

The entry is relocatable: it never names the store's root. The files it boots from
(the seed ISO, the kernel and initrd of the base image) are written as store references,
`@store@/<entry>/<file>` (`STORE_REF`), and activation turns them into this store's paths
with `resolve` right before libvirt sees the XML (`read_resolved`). So a binary cache
shares the entry, and a store can move, like every other entry. The per-VM paths (the
writable disk, the console log, the shared-root export) are outside the store and stay
absolute.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from aivm.errors import BuildError, StoreError
from aivm.graph.node import BuildContext, Node
from aivm.recipes import render, values
from aivm.recipes.base import SHARED_ROOT_TAG, XMLNS, RecipeBase, input_key

ACCELS = ("kvm", "qemu")
FIRMWARES = ("bios", "efi")
DEFAULT_CMDLINE = "root=/dev/vda rw console=ttyS0"
STORE_REF = "@store@"  # a store reference's prefix: "@store@/<entry>/<file>"
DOMAIN_FILE = "domain.xml"


class DomainXml(RecipeBase):
    kind: ClassVar[str] = "domain-xml"
    OUTPUT: ClassVar[str] = DOMAIN_FILE
    version: ClassVar[int] = 2  # 2: store files by reference (`@store@/...`), not absolute
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
        base = ctx.input("base")
        render.write(into, DOMAIN_FILE, "domain.xml.j2", key=ctx.key, xmlns=XMLNS,
                     shared_root_tag=SHARED_ROOT_TAG,
                     input_keys=sorted((r, input_key(p)) for r, p in ctx.inputs.items()),
                     seed=store_ref(ctx.input("seed"), "seed.iso", "seed path"),
                     boot=_boot(base, firmware, lambda f, what: store_ref(base, f, what)), **v)


def store_ref(entry: Path, file: str, what: str) -> str:
    """File `file` of store entry `entry` as a store reference, `@store@/<entry>/<file>`:
    what the domain XML names instead of a path under this store's root."""
    rel = f"{entry.name}/{file}"
    if not _in_entry(rel):
        raise values.invalid(what, file, "a file name inside its store entry")
    values.abs_path(f"/{rel}", what)  # the characters of a path
    return f"{STORE_REF}/{rel}"


def _in_entry(rel: str) -> bool:
    """`rel` is "<entry>/<file...>", with no empty, `.` or `..` part."""
    parts = rel.split("/")
    return len(parts) >= 2 and all(parts) and not {".", ".."} & set(parts)


# a reference starts an attribute value or an element's text: "@store@/<entry>/<file...>"
_REF = re.compile(r'(?<=[">])' + re.escape(STORE_REF) + r'/([^"<]*)')


def resolve(xml: str, store_root: Path) -> str:
    """The domain XML `xml` with its store references made paths under `store_root`, the
    store it is read from (the one place they are resolved). XML without references (an
    entry of recipe version 1) comes back unchanged."""
    from xml.sax.saxutils import escape  # ~20 ms (urllib.request): only when resolving

    root = escape(values.abs_path(str(store_root), "store root").rstrip("/"))

    def path(match: re.Match[str]) -> str:
        if not _in_entry(match.group(1)):
            raise StoreError(f"domain XML names {match.group(0)!r}, not a file in a store entry",
                             hint="rebuild it with `aivm build`", reason="bad-store-ref")
        return f"{root}/{match.group(1)}"

    return _REF.sub(path, xml)


def read_resolved(path: Path) -> str:
    """The domain XML of store entry file `path` (`<store>/<entry>/domain.xml`), resolved
    against the store it lies in."""
    return resolve(path.read_text(), path.parent.parent)


def boot_info(base: Path, firmware: str = "bios") -> dict[str, str]:
    """How the base image boots under `firmware`: the kernel its boot.json names (with
    absolute paths), or, without boot.json, the bootloader on its disk."""
    return _boot(base, firmware, lambda f, what: values.abs_path(str(base / f), what))


def _boot(base: Path, firmware: str, place: Callable[[str, str], str]) -> dict[str, str]:
    """boot_info with the kernel and initrd named by `place(file in base, what)`."""
    out = {"firmware": firmware, "kernel": "", "initrd": "", "cmdline": ""}
    path = base / "boot.json"
    if not path.is_file():
        return out
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise BuildError(f"{path} is not JSON: {exc}", reason="bad-input") from exc
    if data.get("kernel"):
        out["kernel"] = place(str(data["kernel"]), "kernel path")
        if data.get("initrd"):
            out["initrd"] = place(str(data["initrd"]), "initrd path")
        out["cmdline"] = _cmdline(data.get("cmdline") or DEFAULT_CMDLINE)
    return out


def _cmdline(value: Any) -> str:
    if not isinstance(value, str) or any(c in value for c in "\n\r\0") or STORE_REF in value:
        raise values.invalid("kernel cmdline", value, f"one line of text without {STORE_REF}")
    return value
