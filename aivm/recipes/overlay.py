"""overlay: a thin qcow2 backed by the base image's disk in the store.

The pristine template from which activation takes each VM's writable disk.
Its backing file names the base's `disk.qcow2` relative to the overlay
(`../<entry>/disk.qcow2`: entries are siblings), so the entry stays valid
when the store moves or is copied to another machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from aivm import run
from aivm.errors import BuildError
from aivm.graph.node import BuildContext, Node
from aivm.recipes import values
from aivm.recipes.base import RecipeBase

GIB = 1 << 30


class Overlay(RecipeBase):
    kind: ClassVar[str] = "overlay"
    OUTPUT: ClassVar[str] = "disk.qcow2"   # the thin disk (its base's OUTPUT is the same name)
    version: ClassVar[int] = 2   # 2: relative backing file
    defaults: ClassVar[Mapping[str, Any]] = {"size_gib": 32}
    inputs: ClassVar[tuple[str, ...]] = ("base",)
    tools: ClassVar[tuple[str, ...]] = ("qemu-img",)

    def check(self, node: Node) -> dict[str, Any]:
        p = super().check(node)
        return {"size_gib": values.integer(p["size_gib"], "disk size (GiB)", *values.DISK_GIB)}

    def build(self, ctx: BuildContext, into: Path) -> None:
        size = self.check(ctx.node)["size_gib"] * GIB
        base = ctx.input("base") / self.OUTPUT
        values.abs_path(str(base), "base image path")
        virtual = virtual_size(base)
        if size < virtual:
            raise BuildError(f"disk size {size // GIB} GiB is smaller than the base image "
                             f"({-(-virtual // GIB)} GiB)",
                             hint="raise disk_gib for this VM", reason="invalid-param")
        relative = os.path.relpath(base, into)   # qemu resolves it from the overlay's dir
        run.run(run.Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                           "-b", relative, str(into / self.OUTPUT), str(size),
                           meaning="create the VM's thin overlay disk"))


def virtual_size(image: Path) -> int:
    out = run.run(run.Cmd.of("qemu-img", "info", "--output=json", "-U", str(image),
                             meaning="read the base image's virtual size")).stdout
    return int(json.loads(out)["virtual-size"])
