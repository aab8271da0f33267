from __future__ import annotations

from pathlib import Path

import pytest

from aivm.graph import keys
from aivm.graph.graph import Graph
from aivm.graph.node import Node
from aivm.graph.scheduler import resolve
from aivm.graph.statcache import StatCache
from tests.graph.fakes import FakeRegistry, chain_graph


def _keys(registry, store, statcache, nodes) -> dict[str, str]:
    return {n: s.key for n, s in resolve(Graph(nodes), registry, store, statcache).items()}


def test_golden_keys(registry, store, statcache, snapshot) -> None:
    # A mismatch means every user's cache would be invalidated: change keys on purpose only.
    assert _keys(registry, store, statcache, chain_graph()) == snapshot


def test_fixed_output_key_depends_on_digest_only() -> None:
    a = Node("img", "fetch", {"url": "https://a.example/x.img"}, fixed_output="ab" * 32)
    b = Node("img", "fetch", {"url": "file:///mirror/x.img"}, fixed_output="ab" * 32)
    c = Node("img", "fetch", {"url": "https://a.example/x.img"}, fixed_output="cd" * 32)
    k = [keys.derive(keys.material(n, version=1, defaults={}, input_keys={},
                                   template_digests={}, file_digests={})) for n in (a, b, c)]
    assert k[0] == k[1] != k[2]


def test_default_param_and_set_order_do_not_change_keys(registry, store, statcache) -> None:
    plain = _keys(registry, store, statcache, chain_graph())
    with_default = _keys(registry, store, statcache, chain_graph(mid={"suffix": ""}))
    assert plain == with_default
    s1 = _keys(registry, store, statcache, chain_graph(side={"ports": frozenset({22, 80, 443})}))
    s2 = _keys(registry, store, statcache, chain_graph(side={"ports": frozenset({443, 22, 80})}))
    assert s1 == s2
    assert _keys(registry, store, statcache, chain_graph()) == plain  # re-running is stable


def test_one_param_changes_that_node_and_its_dependants(registry, store, statcache) -> None:
    before = _keys(registry, store, statcache, chain_graph())
    after = _keys(registry, store, statcache, chain_graph(mid={"text": "M2"}))
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {"mid", "top"}


def test_template_change_changes_key(registry, store, statcache, tmp_path: Path) -> None:
    before = _keys(registry, store, statcache, chain_graph())
    (registry.template_dir / "text.j2").write_text("{{ text }}!\n")
    fresh = FakeRegistry(registry.template_dir)
    after = _keys(fresh, store, statcache, chain_graph())
    assert all(before[n] != after[n] for n in before)


def test_file_input_hashed_once_via_stat_cache(registry, store, tmp_path: Path) -> None:
    big = tmp_path / "image.raw"
    big.write_bytes(b"x" * (4 << 20))
    nodes = [Node("img", "text", {"text": "I"}, files={"image": big})]
    first = StatCache(store.root / "cache" / "stat.json")
    k1 = _keys(registry, store, first, nodes)
    assert first.hashed_bytes == 4 << 20
    second = StatCache(store.root / "cache" / "stat.json")
    assert _keys(registry, store, second, nodes) == k1
    assert second.hashed_bytes == 0
    big.write_bytes(b"y" * (4 << 20))
    third = StatCache(store.root / "cache" / "stat.json")
    assert _keys(registry, store, third, nodes) != k1
    assert third.hashed_bytes == 4 << 20


def test_non_json_param_is_refused(registry, store, statcache) -> None:
    with pytest.raises(TypeError, match="not JSON-able"):
        _keys(registry, store, statcache, [Node("x", "text", {"text": object()})])
