"""aivm.qcow2: the one header reader, on real images made by qemu-img."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivm import qcow2, run
from aivm.activate import disk, update
from aivm.inspect import pathinfo
from aivm.run import Cmd

pytestmark = pytest.mark.skipif(run.which("qemu-img") is None, reason="no qemu-img")


def img(path: Path, size: str = "64M", backing: str | None = None) -> Path:
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        args += ["-F", "qcow2", "-b", backing]
    run.run(Cmd.of(*args, str(path), *([size] if backing is None else [])))
    return path


def test_no_backing(tmp_path) -> None:
    base = img(tmp_path / "base.qcow2", "64M")
    assert qcow2.read_header(base) == qcow2.Header(64 << 20, "")
    assert qcow2.backing_of(base) is None
    assert disk.backing_of(base) is None
    assert update.disk_size(base) == 64 << 20


def test_relative_backing_resolves_against_the_image_dir(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    img(tmp_path / "base.qcow2", "3G")
    top = img(tmp_path / "sub" / "top.qcow2", backing="../base.qcow2")
    assert qcow2.read_header(top) == qcow2.Header(3 << 30, "../base.qcow2")
    assert disk.backing_of(top) == tmp_path / "sub" / ".." / "base.qcow2"
    info = pathinfo.disk_file(top)
    assert (info.virtual, info.backing) == (3 << 30, "../base.qcow2")


def test_absolute_backing(tmp_path) -> None:
    base = img(tmp_path / "base.qcow2", "1G")
    top = img(tmp_path / "top.qcow2", backing=str(base))
    assert qcow2.backing_of(top) == base
    assert disk.backing_of(top) == base
    assert update.disk_size(top) == 1 << 30


def test_not_a_qcow2(tmp_path) -> None:
    raw = tmp_path / "raw.img"
    run.run(Cmd.of("qemu-img", "create", "-q", "-f", "raw", str(raw), "1M"))
    short = tmp_path / "short"
    short.write_bytes(qcow2.MAGIC)  # the magic alone: a truncated header
    for path in (raw, short, tmp_path / "missing", tmp_path):
        assert qcow2.read_header(path) is None
        assert disk.backing_of(path) is None
        assert update.disk_size(path) == 0
    info = pathinfo.disk_file(raw)
    assert (info.virtual, info.backing) == (None, "")
