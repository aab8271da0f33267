"""The few fields aivm reads from a qcow2 header, without a subprocess or an image lock.

`qemu-img info` takes the image's lock and forks; status, inspection and the
activation plans only need the virtual size and the backing file name, which
sit at fixed offsets of the header (QEMU's docs/interop/qcow2.txt):
magic at 0, backing file offset (u64) at 8 and size (u32) at 16, virtual size
(u64) at 24, all big-endian.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"QFI\xfb"
HEADER = 32
MAX_BACKING = 1023  # QEMU refuses longer backing file names


@dataclass(frozen=True)
class Header:
    virtual_size: int
    backing: str  # as written in the header ("" when none), relative to the image's dir

    def backing_path(self, image: Path) -> Path | None:
        """The backing file as a path: a relative name is resolved against `image`'s dir."""
        if not self.backing:
            return None
        return Path(self.backing) if os.path.isabs(self.backing) else image.parent / self.backing


def read_header(path: Path) -> Header | None:
    """The header of the qcow2 at `path`; None when it is missing, unreadable or no qcow2."""
    try:
        with path.open("rb") as f:
            head = f.read(HEADER)
            if len(head) < HEADER or head[:4] != MAGIC:
                return None
            offset, size = struct.unpack(">QI", head[8:20])
            virtual = int(struct.unpack(">Q", head[24:32])[0])
            backing = b""
            if offset and 0 < size <= MAX_BACKING:
                f.seek(offset)
                backing = f.read(size)
    except OSError:
        return None
    return Header(virtual, backing.decode(errors="replace"))


def backing_of(image: Path) -> Path | None:
    """The backing file of the qcow2 at `image`, or None (no backing, or no qcow2)."""
    header = read_header(image)
    return header.backing_path(image) if header else None
