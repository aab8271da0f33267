"""Fixtures for the config store tests: a config file in tmp, a fake home, fixed host facts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aivm.config import init, stamp


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home directory; Path.home() and ~ point at it."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


@pytest.fixture
def facts(home: Path, monkeypatch: pytest.MonkeyPatch) -> init.HostFacts:
    """Fixed host facts (4 cores, 16000 MiB, one LAN route over 10.77.0.0/24)."""
    fixed = init.HostFacts(cpus=4, memory_mib=16000, routes=("10.77.0.0/24", "192.168.1.0/24"),
                           home=home, timezone="Europe/Berlin")
    monkeypatch.setattr(init, "host_facts", lambda: fixed)
    return fixed


@pytest.fixture
def cfg_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "aivm" / "config.toml"
    path.parent.mkdir()
    yield path
    stamp.forget(path)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
