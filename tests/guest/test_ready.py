"""The ready stamp behind the no-op `aivm up`: trusted only for the same run of the domain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from aivm.guest import ready


@dataclass
class FakeDomain:
    uuid: str = "u-1"
    id: int = 7
    cpu: int = 1000
    active: bool = True

    def isActive(self) -> bool:  # noqa: N802 (libvirt's names)
        return self.active

    def UUIDString(self) -> str:  # noqa: N802
        return self.uuid

    def ID(self) -> int:  # noqa: N802
        return self.id if self.active else -1

    def info(self) -> list[int]:
        return [1, 0, 0, 1, self.cpu]


@pytest.fixture
def dom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDomain:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    d = FakeDomain()
    monkeypatch.setattr("aivm.activate.live.lookup_domain", lambda conn, name: d)
    return d


def test_no_stamp_means_wait(dom: FakeDomain) -> None:
    assert ready.still_ready(None, "box") is False


def test_the_same_run_is_still_ready(dom: FakeDomain) -> None:
    ready.record(None, "box")
    dom.cpu += 5000
    assert ready.still_ready(None, "box") is True


@pytest.mark.parametrize("change", [
    {"id": 8},               # started again, or restored from a saved state
    {"uuid": "u-2"},         # re-created
    {"cpu": 10},             # a fresh QEMU under a reused ID
    {"active": False},       # stopped
])
def test_another_run_means_wait(dom: FakeDomain, change: dict[str, object]) -> None:
    ready.record(None, "box")
    for key, value in change.items():
        setattr(dom, key, value)
    assert ready.still_ready(None, "box") is False


def test_a_broken_stamp_means_wait(dom: FakeDomain) -> None:
    ready.record(None, "box")
    ready.stamp_file("box").write_text("{not json")
    assert ready.still_ready(None, "box") is False
    ready.forget("box")
    assert not ready.stamp_file("box").exists()
