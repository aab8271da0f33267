"""local-image: a base image from a local file, keyed by its content.

For images the user made or downloaded themselves and did not pin: the file
is a file input of the node, so its blake3 digest (hashed once, then taken
from the stat cache while the file is unchanged) is part of the key. The
build copies it into the store (a reflink where the filesystem allows), then
hashes the copy: bytes that differ from the digest the key was made from (the
file changed during the build, or behind the stat cache's back) are refused
and nothing is committed.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from aivm.errors import BuildError
from aivm.graph import keys
from aivm.graph.node import BuildContext
from aivm.recipes.base import RecipeBase
from aivm.run import Cmd, run


class LocalImage(RecipeBase):
    kind: ClassVar[str] = "local-image"
    version: ClassVar[int] = 1
    files: ClassVar[tuple[str, ...]] = ("image",)

    def build(self, ctx: BuildContext, into: Path) -> None:
        self.check(ctx.node)
        source, copy = ctx.files["image"], into / "disk.qcow2"
        run(Cmd.of("cp", "--reflink=auto", "--", str(source), str(copy),
                   meaning="copy the local image into the store"))
        expected = ctx.file_digests.get("image", "")
        if keys.file_digest(copy) != expected:
            raise BuildError(f"{source} changed while aivm copied it into the store: the copy "
                             "does not match the content the node was keyed by",
                             hint="run the build again once nothing writes to the image",
                             reason="input-changed")
