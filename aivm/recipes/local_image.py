"""local-image: a base image from a local file, keyed by its content.

For images the user made or downloaded themselves and did not pin: the file
is a file input of the node, so its blake3 digest (hashed once, then taken
from the stat cache while the file is unchanged) is part of the key. The
build copies it into the store (a reflink where the filesystem allows).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from aivm.graph.node import BuildContext
from aivm.recipes.base import RecipeBase
from aivm.run import Cmd, run


class LocalImage(RecipeBase):
    kind: ClassVar[str] = "local-image"
    version: ClassVar[int] = 1
    files: ClassVar[tuple[str, ...]] = ("image",)

    def build(self, ctx: BuildContext, into: Path) -> None:
        self.check(ctx.node)
        run(Cmd.of("cp", "--reflink=auto", "--", str(ctx.files["image"]),
                   str(into / "disk.qcow2"), meaning="copy the local image into the store"))
