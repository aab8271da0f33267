"""Output digests: every path, type, mode bit that matters, size and byte is covered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aivm.errors import StoreError
from aivm.graph.digest import entry_digest
from aivm.graph.store import Manifest, Store, make_read_only


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "disk.qcow2").write_bytes(b"q" * 5000)
    (root / "sub" / "seed.iso").write_bytes(b"seed")
    os.symlink("../disk.qcow2", root / "sub" / "link")
    return root


def test_digest_is_stable_and_ignores_the_manifest_and_write_bits(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a")
    first = entry_digest(a)
    assert first.startswith("blake3:")
    (a / "manifest.json").write_text("{}")
    make_read_only(a)
    assert entry_digest(a) == first
    assert entry_digest(_tree(tmp_path / "b")) == first  # location-independent


@pytest.mark.parametrize("change", ["byte", "rename", "mode", "link", "extra", "empty-dir"])
def test_digest_changes_with_content(tmp_path: Path, change: str) -> None:
    root = _tree(tmp_path / "e")
    before = entry_digest(root)
    if change == "byte":
        (root / "sub" / "seed.iso").write_bytes(b"seeD")
    elif change == "rename":
        (root / "sub" / "seed.iso").rename(root / "sub" / "seed2.iso")
    elif change == "mode":
        (root / "disk.qcow2").chmod(0o755)
    elif change == "link":
        (root / "sub" / "link").unlink()
        os.symlink("../sub/seed.iso", root / "sub" / "link")
    elif change == "extra":
        (root / "new").write_text("")
    else:
        (root / "d").mkdir()
    assert entry_digest(root) != before


def _manifest(digest: str = "") -> Manifest:
    return Manifest(key="k" * 64, name="n", kind="file", version=1, params={}, inputs={},
                    input_entries={}, templates={}, files={}, created="", size=0,
                    build_seconds=0.0, digest=digest)


def test_commit_records_the_digest(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    path, ours = store.commit("a" * 64, "n", lambda into: _tree(into),
                              lambda size, secs: _manifest())
    assert ours and store.manifest(path).digest == entry_digest(path)
    assert store.manifest(path).digest == entry_digest(_tree(tmp_path / "again"))


def test_commit_refuses_content_not_matching_a_given_digest(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    with pytest.raises(StoreError, match="digest"):
        store.commit("b" * 64, "n", lambda into: _tree(into),
                     lambda size, secs: _manifest("blake3:" + "0" * 64))
    assert store.lookup("b" * 64, "n") is None and not store.temporaries()


def test_old_manifests_without_digest_load() -> None:
    text = _manifest().to_json().replace('"digest": "",', "")
    assert '"digest"' not in text
    assert Manifest.from_json(text).digest == ""
