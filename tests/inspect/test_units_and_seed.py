"""Sizes and durations; the seed ISO is bit-reproducible across clock and time zone."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from aivm.errors import AivmError
from aivm.inspect.units import human_size, parse_duration, parse_size
from aivm.recipes.seed_iso import write_iso


@pytest.mark.parametrize(("text", "size"), [("4096", 4096), ("500M", 500 << 20), ("2G", 2 << 30),
                                            ("1.5GiB", 3 << 29), ("300K", 300 << 10)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "seconds"), [("30d", 2592000), ("12h", 43200),
                                               ("2w3d", 1468800), ("90m", 5400)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "lots", "3x", "10d soon"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(AivmError, match="not a duration"):
        parse_duration(text)


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 200 << 10, 3 << 29, 5 << 40)] == [
        "0 B", "1023 B", "1.0 KiB", "200.0 KiB", "1.5 GiB", "5.0 TiB"]


def _iso(path: Path) -> str:
    write_iso(path, {"user-data": b"#cloud-config\n", "meta-data": b"instance-id: i\n",
                     "network-config": b"version: 2\n"})
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_seed_iso_is_bit_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the fixed clock, pycdlib stamps the wall clock in the local zone."""
    first = _iso(tmp_path / "a.iso")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400 * 400)
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert _iso(tmp_path / "b.iso") == first
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert os.path.getsize(tmp_path / "a.iso") == 69632
