"""gc never deletes what a live VM or a running aivm uses (issue 12, items 7 to 9).

Roots by exact VM name, never cut; entries compared by identity; pending roots
held by a running build; gc removes only what its preview showed; commits are
fsynced; killed builders' temps go at the next build, a live builder's never.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aivm import fsutil
from aivm.activate import disk, teardown
from aivm.activate import up as activation
from aivm.config.schema import Network, Vm
from aivm.graph import gc, scheduler
from aivm.graph.graph import Graph
from aivm.graph.statcache import StatCache
from aivm.graph.store import MANIFEST, Manifest, Root, Store
from tests.graph.fakes import FakeRegistry, chain_graph

ROOT = Path(__file__).resolve().parents[2]
NODES = ("base", "mid", "side", "top")


def _build(store: Store, registry: FakeRegistry, **overrides: dict) -> dict[str, Path]:
    report = scheduler.build(Graph(chain_graph(**overrides)), registry, store, StatCache(None))
    store.release()  # as a finished command does: only the roots written below keep entries
    return {n: s.path for n, s in report.states.items()}


def _root_vm(store: Store, vm: str, paths: dict[str, Path]) -> None:
    for node, path in paths.items():
        store.add_root(activation.root_name(vm, f"{vm}.{node}"), path)


def _run_step(step) -> None:  # type: ignore[no-untyped-def]
    for action in step.actions:
        action.perform()


# ---- item 7: roots per VM, by exact name, compared by identity ------------------------

def test_destroying_a_vm_keeps_the_roots_of_a_vm_whose_name_it_prefixes(
        store: Store, registry: FakeRegistry) -> None:
    paths = _build(store, registry)
    _root_vm(store, "vm--x", paths)
    _root_vm(store, "vm", {"top": paths["top"]})
    step = teardown._release_roots(store, Vm(name="vm"))
    assert step is not None
    _run_step(step)
    assert store.vm_roots("vm") == {}
    assert set(store.vm_roots("vm--x")) == {f"vm--x.{n}" for n in NODES}
    assert gc.collect(store, dry_run=False).dead == ()
    assert all((p / MANIFEST).is_file() for p in paths.values())


def test_long_vm_names_keep_one_root_per_node(store: Store, registry: FakeRegistry) -> None:
    vm = "v" * 63  # the longest name the config allows; old names were cut at 80 chars
    paths = _build(store, registry)
    _root_vm(store, vm, paths)
    assert len(store.vm_roots(vm)) == 4
    twin = "v" * 62 + "w"  # differs in its last character only
    _root_vm(store, twin, {"top": paths["top"]})
    assert store.remove_vm_roots(twin) == 1 and len(store.vm_roots(vm)) == 4
    result = gc.collect(store, dry_run=False)
    assert result.dead == () and len(result.live) == 4


def test_root_names_are_escaped_injectively(store: Store, registry: FakeRegistry) -> None:
    paths = _build(store, registry)
    names = ["a/b", "a_b", "a%2Fb", ".hidden", "%2Ehidden", "é", "x" * 200]
    for name, node in zip(names, ["base", "mid", "side", "top", "base", "mid", "side"],
                          strict=True):
        store.add_root(name, paths[node])
    assert sorted(r.name for r in store.roots()) == sorted(names)
    assert all(link.parent == store.root / "roots" / "explicit"
               for link in store.root_links().values())


@pytest.mark.parametrize("spelling", ["symlink", "dotdot"])
def test_gc_through_another_spelling_keeps_rooted_entries(
        tmp_path: Path, store: Store, registry: FakeRegistry, spelling: str) -> None:
    paths = _build(store, registry)
    if spelling == "symlink":
        other = tmp_path / "link-to-store"
        other.symlink_to(store.root)
    else:
        other = store.root / "roots" / ".."
    _root_vm(store, "vm", {"top": paths["top"]})
    result = gc.collect(Store(other), dry_run=False)
    assert result.dead == () and len(result.live) == 4
    assert all((p / MANIFEST).is_file() for p in paths.values())


def test_format_1_absolute_roots_through_a_symlink_still_count(
        tmp_path: Path, store: Store, registry: FakeRegistry) -> None:
    paths = _build(store, registry)
    link = tmp_path / "link-to-store"
    link.symlink_to(store.root)
    (store.root / "roots" / "vm--vm.top").symlink_to(link / paths["top"].name)  # format 1
    assert gc.collect(store, dry_run=False).dead == ()
    assert store.roots()[Root.explicit("vm--vm.top")] == link / paths["top"].name


def test_format_1_store_is_upgraded_in_place(tmp_path: Path, registry: FakeRegistry) -> None:
    store = Store(tmp_path / "s").ensure()
    (store.root / "aivm-store-version").write_text("1\n")
    Store(tmp_path / "s").ensure()
    assert (store.root / "aivm-store-version").read_text() == "2\n"


def _qcow2_backed_by(path: Path, backing: Path) -> None:
    name = str(backing).encode()
    header = b"QFI\xfb" + (3).to_bytes(4, "big") + (64).to_bytes(8, "big") \
        + len(name).to_bytes(4, "big")
    path.write_bytes(header.ljust(64, b"\0") + name)


def test_disk_backing_root_through_another_spelling(
        tmp_path: Path, store: Store, registry: FakeRegistry) -> None:
    old = _build(store, registry)
    new = _build(store, registry, side={"text": "S2"})
    link = tmp_path / "link-to-store"
    link.symlink_to(store.root)
    disk_file = tmp_path / "disk.qcow2"  # sits on the old "overlay", spelled via the link
    _qcow2_backed_by(disk_file, link / old["top"].name / "out.txt")
    assert disk.backing_of(disk_file) == link / old["top"].name / "out.txt"
    art = activation.Artifacts(Vm(name="vm"), Network(), {
        "vm.overlay": scheduler.NodeState("vm.overlay", "text", "k", new["top"], True)})
    step = activation.backing_root_step(store, art, disk_file)
    assert step is not None and step.title == "Keep the image under the disk of VM vm"
    _run_step(step)
    assert store.vm_roots("vm") == {"disk-backing": old["top"]}
    _root_vm(store, "vm", {"top": new["top"]})
    kept = set(gc.collect(store, dry_run=False).live)
    assert old["top"] in kept and new["top"] in kept


def test_a_replaced_root_keeps_its_old_entry_until_the_plan_ends(
        store: Store, registry: FakeRegistry) -> None:
    """`up` roots the new overlay, then asks before rooting the old one its disk sits on:
    a gc at that prompt must not take the old one."""
    old = _build(store, registry)
    new = _build(store, registry, side={"text": "S2"})

    def art(path: Path) -> activation.Artifacts:
        return activation.Artifacts(Vm(name="vm"), Network(), {
            "vm.overlay": scheduler.NodeState("vm.overlay", "text", "k", path, True)})

    for entry in (old["top"], new["top"]):
        step = activation.roots_step(store, art(entry))
        assert step is not None
        _run_step(step)
    assert store.vm_roots("vm") == {"vm.overlay": new["top"]}
    assert old["top"] in gc.collect(Store(store.root), dry_run=False).live  # at the prompt
    store.release()  # the `up` process ended without rooting it: now it may go
    assert old["top"] in gc.collect(Store(store.root), dry_run=False).dead


# ---- item 8: pending roots across processes; gc removes only what it showed -----------

def _worker(store: Path, templates: Path, *args: str,
            delay: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.graph.build_worker", str(store), str(templates),
         str(delay), str(store.parent / "log"), *args], cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_gc_keeps_what_a_waiting_build_holds(tmp_path: Path, registry: FakeRegistry) -> None:
    """Like `aivm up` at its prompt: built, not rooted yet, process alive."""
    store = Store(tmp_path / "store").ensure()
    worker = _worker(store.root, registry.template_dir, "hold")
    try:
        assert worker.stdout is not None and worker.stdout.readline() == "built\n"
        result = gc.collect(store, dry_run=False)
        assert result.dead == () and len(result.live) == 4
        assert len(store.entries()) == 4
    finally:
        worker.communicate(input="", timeout=30)
    assert worker.returncode == 0
    assert [p.name for p in (store.root / "roots" / "pending").iterdir()] == []
    assert len(gc.collect(store, dry_run=False).dead) == 4


def test_pending_roots_of_a_killed_process_are_dropped(
        tmp_path: Path, registry: FakeRegistry) -> None:
    store = Store(tmp_path / "store").ensure()
    worker = _worker(store.root, registry.template_dir, "hold")
    assert worker.stdout is not None and worker.stdout.readline() == "built\n"
    worker.kill()
    worker.communicate(timeout=30)
    pending = list((store.root / "roots" / "pending").glob("*.json"))
    assert len(pending) == 1  # left behind by the kill, no longer locked
    assert len(gc.collect(store, dry_run=False).dead) == 4
    assert not pending[0].exists()


def test_gc_removes_only_what_its_preview_showed(tmp_path: Path, store: Store,
                                                 registry: FakeRegistry) -> None:
    first = _build(store, registry)
    preview = gc.collect(store, dry_run=True)
    assert set(preview.dead) == set(first.values())
    # between the preview and the answer: another process builds, this one roots an entry
    worker = _worker(store.root, registry.template_dir, "", "S2")
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    store.add_root(Root("vm", "vm.mid"), first["mid"])
    later = set(store.entries()) - set(first.values())
    assert len(later) == 2  # side and top of the second graph: dead now, never shown
    done = gc.collect(store, dry_run=False, shown=preview)
    assert set(done.dead) == {first["side"], first["top"]}
    assert set(done.kept) == {first["base"], first["mid"]}  # rooted since the preview
    assert all((p / MANIFEST).is_file() for p in later)


# ---- item 9: durable commits, killed builders' temps --------------------------------

def test_commit_fsyncs_every_file_and_directory(store: Store, registry: FakeRegistry,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    def build(into: Path) -> None:
        (into / "sub").mkdir()
        (into / "sub" / "data.bin").write_bytes(b"x" * 4096)
        (into / "top.txt").write_text("t")

    def describe(size: int, seconds: float) -> Manifest:
        return Manifest("a" * 64, "n", "text", 1, {}, {}, {}, {}, {}, "now", size, seconds)

    monkeypatch.setattr(os, "fsync", spy)
    entry, ours = store.commit("a" * 64, "n", build, describe)
    assert ours and (entry / "sub" / "data.bin").is_file()
    names = [Path(p).name for p in synced]
    for must in ("data.bin", "top.txt", MANIFEST, "sub"):
        assert must in names, f"{must} not fsynced: {synced}"
    root = os.path.realpath(store.root)
    assert root in synced, "the store directory was not fsynced after the rename"
    assert synced.index(root) > names.index(MANIFEST)


def _wait_for_temp(store: Store, proc: subprocess.Popen[str], timeout: float = 20) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = store.temporaries()
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("no temp directory appeared")


def test_next_build_removes_a_killed_builders_temp(tmp_path: Path,
                                                   registry: FakeRegistry) -> None:
    store = Store(tmp_path / "store").ensure()
    worker = _worker(store.root, registry.template_dir, delay=30)
    temp = _wait_for_temp(store, worker)
    (temp / "partial.bin").write_bytes(b"\0" * 1_000_000)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)
    assert temp.is_dir()
    _build(store, registry, side={"text": "S2"})  # another graph: the sweep is store-wide
    assert not temp.exists() and store.temporaries() == []


def test_a_live_builders_temp_is_never_removed(tmp_path: Path, registry: FakeRegistry) -> None:
    store = Store(tmp_path / "store").ensure()
    worker = _worker(store.root, registry.template_dir, delay=2.0)
    try:
        temp = _wait_for_temp(store, worker)
        _build(store, registry, base={"text": "B2"}, side={"text": "S2"})  # takes ms
        assert temp.is_dir(), "a build removed the temp of a builder that is still running"
    finally:
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert store.temporaries() == []
    assert len([e for e in store.entries() if (e / MANIFEST).is_file()]) == 8


def test_store_lock_is_the_shared_helper(store: Store) -> None:
    with store.lock(exclusive=False):
        assert fsutil.is_locked(store.root / ".lock")
    assert not fsutil.is_locked(store.root / ".lock")
