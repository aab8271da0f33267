"""An unpinned local image: keyed by its content, hashed once, copied into the store."""

from __future__ import annotations

from pathlib import Path

from aivm.config.schema import Image, ImageSource
from aivm.config.to_graph import image_node
from aivm.graph.graph import Graph
from aivm.graph.scheduler import build
from aivm.graph.statcache import StatCache
from aivm.graph.store import Store
from aivm.recipes import REGISTRY
from tests.recipes.conftest import sample_config


def _build(store: Store, image: Path, ssh_key: Path):  # type: ignore[no-untyped-def]
    cfg = sample_config(ssh_key, Image(name="mine", source=ImageSource.FETCH, url=str(image),
                                     sha256=""))
    node = image_node(cfg, cfg.images[0])
    cache = StatCache(store.root / "cache" / "stat.json")
    return node, cache, build(Graph([node]), REGISTRY, store, cache)


def test_local_image_keyed_by_content_and_hashed_once(tmp_path: Path, store: Store,
                                                      ssh_key: Path) -> None:
    image = tmp_path / "custom.qcow2"
    image.write_bytes(b"q" * (3 << 20))
    node, cache, first = _build(store, image, ssh_key)
    assert node.kind == "local-image" and node.fixed_output is None
    assert first.built == ["image.mine"] and cache.hashed_bytes == 3 << 20
    entry = first.states["image.mine"].path
    assert (entry / "disk.qcow2").read_bytes() == image.read_bytes()

    _, cache2, second = _build(store, image, ssh_key)
    assert second.built == [] and cache2.hashed_bytes == 0

    image.write_bytes(b"r" * (3 << 20))
    _, _, third = _build(store, image, ssh_key)
    assert third.built == ["image.mine"]
    assert third.states["image.mine"].reasons == ("file image changed",)


def test_image_changed_behind_the_stat_cache_is_refused(tmp_path: Path, store: Store,
                                                        ssh_key: Path) -> None:
    """The key comes from the stat cache's digest; the bytes copied must match it."""
    import os

    import pytest

    from aivm.errors import BuildError

    image = tmp_path / "custom.qcow2"
    image.write_bytes(b"q" * (1 << 20))
    cfg = sample_config(ssh_key, Image(name="mine", source=ImageSource.FETCH, url=str(image),
                                     sha256=""))
    node = image_node(cfg, cfg.images[0])
    cache = StatCache(store.root / "cache" / "stat.json")
    cache.digest(image)  # keyed from these bytes
    stamp = image.stat()
    with open(image, "r+b") as fh:  # same inode and size, new bytes, old mtime
        fh.write(b"evil")
    os.utime(image, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    with pytest.raises(BuildError) as err:
        build(Graph([node]), REGISTRY, store, cache)
    assert f"{image} changed while aivm copied it" in err.value.message
    assert store.entries() == [] and store.temporaries() == []


def test_image_changed_during_the_copy_is_refused(tmp_path: Path, store: Store) -> None:
    """The source is rewritten between keying and copying (the copy step itself races)."""
    import pytest

    from aivm.errors import BuildError
    from aivm.graph import keys
    from aivm.graph.node import BuildContext, Node

    image = tmp_path / "custom.qcow2"
    image.write_bytes(b"a" * 4096)
    keyed = keys.file_digest(image)
    image.write_bytes(b"b" * 4096)
    node = Node("image.mine", "local-image", files={"image": image})
    into = tmp_path / "entry"
    into.mkdir()
    ctx = BuildContext(node, "k", {}, {"image": image}, file_digests={"image": keyed})
    with pytest.raises(BuildError) as err:
        REGISTRY.recipe("local-image").build(ctx, into)
    assert err.value.reason == "input-changed"
