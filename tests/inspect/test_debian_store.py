"""path-info, why-depends, build logs and --check on the real Debian image (the session's
shared store: no extra image build; --check rebuilds it once aside, about a minute)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aivm import buildlog
from aivm.graph import scheduler
from aivm.graph.graph import Graph
from aivm.graph.node import Node
from aivm.inspect import check, pathinfo, why
from aivm.recipes import REGISTRY
from tests.recipes.helpers import build_debootstrap_image, debootstrap_node, store_at

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mmdebstrap's root mode needs root"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed"),
]


def test_inspect_the_debian_image(shared_store: Path, tmp_path: Path) -> None:
    entry = build_debootstrap_image(shared_store)
    store = store_at(shared_store)
    node = debootstrap_node()
    overlay = Node("vm.overlay", "overlay", params={"size_gib": 4}, inputs={"base": node.name})
    graph = Graph([node, overlay])
    from aivm.graph.statcache import StatCache

    statcache = StatCache(tmp_path / "stat.json")
    scheduler.build(graph, REGISTRY, store, statcache)
    states = scheduler.resolve(graph, REGISTRY, store, statcache)

    info = pathinfo.entry_info(store, node.name, "debootstrap", states[node.name].key, entry)
    (disk,) = info.disks
    assert disk.virtual == 3 << 30 and 100 << 20 < disk.allocated < disk.virtual
    top = pathinfo.entry_info(store, overlay.name, "overlay", states[overlay.name].key,
                              states[overlay.name].path)
    assert top.closure == (states[overlay.name].path, entry)
    assert top.closure_size == top.size + info.size
    assert top.disks[0].backing == f"../{entry.name}/disk.qcow2" and top.disks[0].virtual == 4 << 30

    g = why.dependency_graph(store, states, {"vm": [node.name, overlay.name]})
    (path,) = why.paths(g, "vm:vm", why.goals_for(g, "debian"), every=True)
    assert [str(h) for h in path] == [
        "VM vm", f"vm.overlay ({states[overlay.name].path.name[:12]}) [vm.overlay]",
        f"image.debian ({entry.name[:12]}) [base]"]

    log = buildlog.find(store.root, states[node.name].key)
    if store.manifest(entry).created >= "2026-12-04T10:15":  # built since build logs exist
        assert log is not None
        text = log.read_text()
        assert "$ " in text and "mmdebstrap" in text and "mkfs.ext4" in text

    (result,) = check.check(graph, REGISTRY, store, states, [node.name])
    assert result.status == "differs", result
    assert "mkfs.ext4" in result.detail
    assert check.by_kind([result]) == {"debootstrap": "differs"}
    assert not store.temporaries()
