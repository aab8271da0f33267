from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aivm.errors import StoreError
from aivm.graph import gc, scheduler
from aivm.graph.graph import Graph
from aivm.graph.statcache import StatCache
from aivm.graph.store import MANIFEST, Root, Store
from tests.graph.fakes import chain_graph

ROOT = Path(__file__).resolve().parents[2]


def _worker(store: Path, templates: Path, delay: float, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.graph.build_worker", str(store), str(templates),
         str(delay), str(log)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _assert_no_broken_entry(store: Store) -> None:
    for entry in store.entries():
        if (entry / MANIFEST).is_file():
            manifest = store.manifest(entry)
            assert (entry / "out.txt").is_file(), f"{entry} committed without its output"
            assert entry.name.startswith(manifest.key[:32])


@pytest.mark.slow
def test_sigkill_at_random_points_leaves_no_broken_entry(tmp_path: Path, registry) -> None:
    store_dir = tmp_path / "store"
    rng = random.Random(20261127)
    for _ in range(6):
        proc = _worker(store_dir, registry.template_dir, 0.05, tmp_path / "log")
        time.sleep(rng.uniform(0.25, 0.6))  # after interpreter start-up, inside the builds
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_no_broken_entry(Store(store_dir))
    store = Store(store_dir).ensure()
    report = scheduler.build(Graph(chain_graph()), registry, store, StatCache(None))
    assert (report.states["top"].path / "out.txt").read_text() == "BMST"
    assert store.temporaries() == []  # the killed builders' temps went at this build


@pytest.mark.slow
def test_two_processes_build_each_node_once(tmp_path: Path, registry) -> None:
    store_dir, log = tmp_path / "store", tmp_path / "log"
    procs = [_worker(store_dir, registry.template_dir, 0.2, log) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    built = log.read_text().split()
    assert sorted(built) == ["base", "mid", "side", "top"], built
    _assert_no_broken_entry(Store(store_dir))


def test_entry_without_manifest_is_not_a_result(store: Store, registry, statcache) -> None:
    report = scheduler.build(Graph(chain_graph()), registry, store, statcache)
    entry = report.states["base"].path
    os.chmod(entry, 0o755)
    os.chmod(entry / MANIFEST, 0o644)
    (entry / MANIFEST).unlink()
    again = scheduler.resolve(Graph(chain_graph()), registry, store, statcache)
    assert not again["base"].cached
    rebuilt = scheduler.build(Graph(chain_graph()), registry, store, statcache)
    assert rebuilt.built == ["base"]
    assert (entry / MANIFEST).is_file()


def test_store_format_version_is_checked(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    (store.root / "aivm-store-version").write_text("99\n")
    with pytest.raises(StoreError) as err:
        Store(tmp_path / "s").ensure()
    assert err.value.reason == "store-format"


def test_gc_keeps_everything_reachable_from_roots(store: Store, registry, statcache) -> None:
    report = scheduler.build(Graph(chain_graph()), registry, store, statcache)
    old_top = report.states["top"].path
    store.add_root("vm-a", report.states["mid"].path)
    changed = scheduler.build(Graph(chain_graph(side={"text": "S2"})), registry, store, statcache)
    store.add_root("vm-b", changed.states["top"].path)
    store.release()  # the builds' pending roots

    dry = gc.collect(store, dry_run=True)
    assert set(dry.dead) == {old_top, report.states["side"].path}
    assert all(p.exists() for p in dry.dead), "a dry run removed something"
    assert dry.dead_bytes > 0

    done = gc.collect(store, dry_run=False)
    assert not old_top.exists()
    for name in ("base", "mid"):
        assert (report.states[name].path / MANIFEST).is_file()
    for name in changed.states:
        assert (changed.states[name].path / MANIFEST).is_file()
    assert set(done.live) == {changed.states[n].path for n in ("base", "mid", "side", "top")}


def test_gc_refuses_while_a_build_holds_the_lock(store: Store) -> None:
    with store.lock(exclusive=False), pytest.raises(StoreError) as err:
        gc.collect(store, dry_run=True)
    assert err.value.reason == "store-busy"


def test_removing_root_releases_entries(store: Store, registry, statcache) -> None:
    report = scheduler.build(Graph(chain_graph()), registry, store, statcache)
    store.release()
    store.add_root(Root("vm-a", "vm-a.domain"), report.states["top"].path)
    assert gc.collect(store, dry_run=True).dead == ()
    assert store.remove_vm_roots("vm-a") == 1
    assert len(gc.collect(store, dry_run=False).dead) == 4
    assert store.entries() == []
