"""`aivm gc` in another process while `aivm up` waits at its prompt (issue 12, item 8).

In-process `aivm up` on libvirt's `test:///default` driver (the world of
tests/cli/test_surface.py); the gc is a real second process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aivm.activate import approve, disk
from aivm.graph.store import MANIFEST, Store
from tests.cli.test_surface import World, tiny_image, world  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def test_gc_while_up_waits_at_its_prompt_keeps_the_fresh_entries(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    collected: list[dict[str, object]] = []

    def ask_after_a_gc(prompt: str) -> str:
        if not collected:
            gc = subprocess.run([sys.executable, "-m", "aivm", "--store", str(world.store),
                                 "gc", "--yes", "--json"], cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
            assert gc.returncode == 0, gc.stderr
            collected.append(json.loads(gc.stdout))
        return "a"

    ui = approve.Ui(ask=ask_after_a_gc, is_tty=lambda: True)
    monkeypatch.setattr(approve, "Ui", lambda: ui)
    up = world.aivm("up", "--no-wait", "--json")
    assert up.exit_code == 0, up.output
    assert collected and collected[0]["dead"] == [], collected  # nothing the build made
    store = Store(world.store)
    entries = [e for e in store.entries() if (e / MANIFEST).is_file()]
    assert len(entries) == len(json.loads(up.stdout)["built"]) >= 5
    assert set(store.vm_roots("box").values()) == set(entries)
    backing = disk.backing_of(world.state / "box" / "disk.qcow2")
    assert backing is not None and backing.is_file()
    after = subprocess.run([sys.executable, "-m", "aivm", "--store", str(world.store), "gc",
                            "--dry-run", "--json"], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert json.loads(after.stdout)["dead"] == []  # `up` exited: its VM roots keep them


def test_a_dry_run_up_writes_no_pending_roots(world: World,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[Path | None] = []
    real = Store.hold
    monkeypatch.setattr(Store, "hold", lambda self, entries: written.append(
        real(self, entries)) or written[-1])
    assert world.aivm("build").exit_code == 0  # nothing stale: `up --dry-run` builds (no-op)
    assert len(written) == 1 and written[0] is not None and not written[0].exists()
    dry = world.aivm("up", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert all(w is None for w in written[1:])  # no hold, or one that writes nothing
    assert list((world.store / "roots" / "pending").iterdir()) == []
