"""Store entries that stay valid when the store moves (a prerequisite of sharing a cache)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from aivm.graph.node import Node
from aivm.run import Cmd, run
from tests.recipes.helpers import render_node


def test_an_overlay_follows_its_base_when_the_store_moves(tmp_path: Path) -> None:
    old = tmp_path / "old-store"
    base = old / "0123-image.cloud"
    base.mkdir(parents=True)
    run(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", str(base / "disk.qcow2"), "1G"))
    node = Node("v.overlay", "overlay", params={"size_gib": 2}, inputs={"base": "b"})
    render_node(node, old / "4567-v.overlay", inputs={"base": base})
    new = tmp_path / "elsewhere" / "new-store"
    new.parent.mkdir()
    shutil.move(old, new)
    chain = json.loads(run(Cmd.of("qemu-img", "info", "--output=json", "--backing-chain", "-U",
                                  str(new / "4567-v.overlay" / "disk.qcow2"))).stdout)
    assert [Path(layer["filename"]).resolve() for layer in chain] == [
        new / "4567-v.overlay" / "disk.qcow2", new / "0123-image.cloud" / "disk.qcow2"]
    assert "old-store" not in (new / "4567-v.overlay" / "disk.qcow2").read_bytes().decode("latin-1")
