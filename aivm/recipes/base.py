"""What every recipe shares: params merged with defaults, tool checks, input keys."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from aivm import run
from aivm.errors import AivmError
from aivm.graph.node import Node

TOOL_PACKAGES = {
    "qemu-img": "qemu-utils", "mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs",
    "sfdisk": "fdisk", "mkfs.vfat": "dosfstools", "mmd": "mtools", "mcopy": "mtools",
    "grub-mkimage": "grub-common",
}


class RecipeBase:
    kind: ClassVar[str] = ""
    version: ClassVar[int] = 1
    templates: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[Mapping[str, Any]] = {}
    required: ClassVar[tuple[str, ...]] = ()
    inputs: ClassVar[tuple[str, ...]] = ()
    files: ClassVar[tuple[str, ...]] = ()
    tools: ClassVar[tuple[str, ...]] = ()

    def params(self, node: Node) -> dict[str, Any]:
        """The node's params over the defaults; unknown or missing params are errors."""
        unknown = sorted(set(node.params) - set(self.defaults) - set(self.required))
        if unknown:
            raise AivmError(f"node {node.name}: unknown param(s) {', '.join(unknown)} "
                            f"for kind {self.kind}",
                            hint="known: " + ", ".join(sorted({*self.defaults, *self.required})),
                            reason="invalid-param")
        missing = [p for p in self.required if p not in node.params]
        if missing:
            raise AivmError(f"node {node.name}: missing param(s) {', '.join(missing)}",
                            hint=f"kind {self.kind} needs them set", reason="invalid-param")
        return {**self.defaults, **node.params}

    def check_wiring(self, node: Node) -> None:
        for what, have, want in (("input", node.inputs, self.inputs),
                                 ("file", node.files, self.files)):
            if set(have) != set(want):
                raise AivmError(f"node {node.name}: {what}s {sorted(have)}, kind {self.kind} "
                                f"takes {sorted(want)}", reason="invalid-param")

    def check_tools(self) -> None:
        for tool in self.tools:
            if run.which(tool) is None:
                raise AivmError(f"{tool} is not installed; kind {self.kind} needs it",
                                hint=f"apt-get install {TOOL_PACKAGES.get(tool, tool)}",
                                reason="missing-tool")

    def check(self, node: Node) -> dict[str, Any]:
        """Validate the node; recipes override to check param values too."""
        self.check_wiring(node)
        return self.params(node)

    def preflight(self, node: Node) -> None:
        self.check_tools()
        self.check(node)


def input_key(entry: Path) -> str:
    """The full key of an input store entry, from its manifest (or its directory name)."""
    try:
        return str(json.loads((entry / "manifest.json").read_text())["key"])
    except (OSError, ValueError, KeyError, TypeError):
        return entry.name.split("-", 1)[0]


# The virtiofs tag of a VM's one shared-root export (aivm/guest/attach.py mounts it).
SHARED_ROOT_TAG = "aivm-shared-root"

# The namespace of aivm's <metadata> element in libvirt domain and network XML.
XMLNS = "https://github.com/Erotemic/aivm/xmlns/node/1"
