from __future__ import annotations

import pytest

from aivm.errors import BuildError, GraphError
from aivm.graph import scheduler
from aivm.graph.graph import Graph
from aivm.graph.node import Node
from tests.graph.fakes import FakeRegistry, chain_graph


def _build(registry, store, statcache, nodes, **kw):
    return scheduler.build(Graph(nodes), registry, store, statcache, **kw)


def test_second_run_builds_nothing(registry, store, statcache) -> None:
    first = _build(registry, store, statcache, chain_graph())
    assert sorted(first.built) == ["base", "mid", "side", "top"]
    second = _build(registry, store, statcache, chain_graph())
    assert second.built == [] and sorted(second.cached) == ["base", "mid", "side", "top"]
    top = second.states["top"].path / "out.txt"
    assert top.read_text() == "BMST"


def test_changed_leaf_rebuilds_exactly_its_dependants(registry, store, statcache) -> None:
    _build(registry, store, statcache, chain_graph())
    report = _build(registry, store, statcache, chain_graph(base={"text": "B2"}))
    assert sorted(report.built) == ["base", "mid", "top"]
    assert report.states["base"].reasons == ('param text "B" → "B2"',)
    assert report.states["mid"].reasons == ("input base changed",)


def test_failure_skips_dependants_and_names_them(registry, store, statcache) -> None:
    with pytest.raises(BuildError) as err:
        _build(registry, store, statcache, chain_graph(mid={"fail": True}))
    assert err.value.reason == "build-failed"
    assert "mid: mid was told to fail" in err.value.message
    assert "skipped because of it: top" in err.value.message
    # what could be built was kept and is reused
    report = _build(registry, store, statcache, chain_graph())
    assert sorted(report.built) == ["mid", "top"]


def test_keep_going_builds_independent_nodes(tmp_path, store, statcache) -> None:
    registry = FakeRegistry(tmp_path / "t")
    nodes = [Node("bad", "text", {"fail": True, "delay": 0.05}),
             Node("after-bad", "text", {"text": "x"}, inputs={"a": "bad"}),
             Node("good", "text", {"text": "g", "delay": 0.3})]
    with pytest.raises(BuildError):
        scheduler.build(Graph(nodes), registry, store, statcache, jobs=1, keep_going=True)
    assert "good" in registry.log


def test_independent_nodes_build_in_parallel(tmp_path, store, statcache) -> None:
    registry = FakeRegistry(tmp_path / "t", delay=0.3)
    nodes = [Node(f"n{i}", "text", {"text": str(i)}) for i in range(4)]
    report = scheduler.build(Graph(nodes), registry, store, statcache, jobs=4)
    assert len(report.built) == 4
    assert registry.text.max_active >= 2


def test_cycle_is_named(registry, store, statcache) -> None:
    nodes = [Node("a", "text", inputs={"x": "b"}), Node("b", "text", inputs={"x": "a"})]
    with pytest.raises(GraphError) as err:
        _build(registry, store, statcache, nodes)
    assert err.value.reason == "cycle"
    assert "a -> b -> a" in err.value.message or "b -> a -> b" in err.value.message


def test_missing_input_and_duplicate_names(registry, store, statcache) -> None:
    with pytest.raises(GraphError) as err:
        _build(registry, store, statcache, [Node("a", "text", inputs={"x": "nope"})])
    assert err.value.reason == "missing-input"
    with pytest.raises(GraphError) as err:
        Graph([Node("a", "text", {"text": 1}), Node("a", "text", {"text": 2})])
    assert err.value.reason == "duplicate-node"


def test_preflight_failure_builds_nothing(registry, store, statcache) -> None:
    with pytest.raises(BuildError) as err:
        _build(registry, store, statcache, chain_graph(top={"preflight_fail": True}))
    assert err.value.reason == "preflight"
    assert registry.log == []


def test_targets_limit_the_build(registry, store, statcache) -> None:
    report = _build(registry, store, statcache, chain_graph(), targets=["mid"])
    assert sorted(report.built) == ["base", "mid"]


def test_entries_are_read_only_with_manifest(registry, store, statcache) -> None:
    report = _build(registry, store, statcache, chain_graph())
    entry = report.states["top"].path
    manifest = store.manifest(entry)
    assert manifest.key == report.states["top"].key and manifest.kind == "text"
    assert set(manifest.inputs) == {"mid", "side"}
    assert (entry / "out.txt").stat().st_mode & 0o222 == 0
    assert entry.stat().st_mode & 0o222 == 0


def test_build_events_are_typed(registry, store, statcache) -> None:
    seen: list[scheduler.BuildEvent] = []
    _build(registry, store, statcache, chain_graph(base={"text": "E"}), on_event=seen.append)
    assert all(isinstance(e, scheduler.BuildEvent) for e in seen)
    by_node = {n: [e.kind for e in seen if e.name == n] for n in ("base", "mid", "side", "top")}
    assert by_node == dict.fromkeys(by_node, ["start", "done"])
    start = next(e for e in seen if e.name == "base" and e.kind == "start")
    assert start.reasons and all(isinstance(r, str) for r in start.reasons)
    assert all(e.seconds >= 0 for e in seen if e.kind == "done")
    seen.clear()
    with pytest.raises(BuildError):
        _build(registry, store, statcache, chain_graph(base={"text": "F"}, mid={"fail": True}),
               on_event=seen.append)
    failed = next(e for e in seen if e.kind == "failed")
    assert failed.name == "mid" and failed.error.startswith("mid was told to fail (log: ")
    skipped = next(e for e in seen if e.kind == "skipped")
    assert (skipped.name, skipped.because) == ("top", "mid")
