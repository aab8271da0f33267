from __future__ import annotations

from pathlib import Path

import pytest

from aivm.graph.statcache import StatCache
from aivm.graph.store import Store
from tests.graph.fakes import FakeRegistry


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store").ensure()


@pytest.fixture
def registry(tmp_path: Path) -> FakeRegistry:
    return FakeRegistry(tmp_path / "templates")


@pytest.fixture
def statcache(store: Store) -> StatCache:
    return StatCache(store.root / "cache" / "stat.json")
