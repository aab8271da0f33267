"""The order tests/conftest.py gives the modules that share one booted state."""

from __future__ import annotations

from tests.conftest import grouped

RANKS = {"booted_state": 0, "workplace": 1, "workplace2": 1}


def order(*modules: str) -> list[str]:
    items = [f"{m}::{n}" for m in modules for n in (1, 2)]
    return [i.split("::")[0] for i in grouped(items, lambda i: RANKS.get(i.split("::")[0]))][::2]


def test_the_group_runs_together_where_its_first_module_was_rank_0_first() -> None:
    assert order("binary_cache", "booted_state", "default_path", "scenario", "workplace",
                 "workplace2") == ["binary_cache", "booted_state", "workplace", "workplace2",
                                   "default_path", "scenario"]
    assert order("a", "workplace2", "scenario", "workplace", "booted_state", "z") == [
        "a", "booted_state", "workplace2", "workplace", "scenario", "z"]


def test_tests_inside_a_module_keep_their_order_and_no_group_changes_nothing() -> None:
    items = ["workplace::b", "x::1", "booted_state::a", "workplace::a", "booted_state::b"]
    rank = {"booted_state": 0, "workplace": 1}
    assert grouped(items, lambda i: rank.get(i.split("::")[0])) == [
        "booted_state::a", "booted_state::b", "workplace::b", "workplace::a", "x::1"]
    assert grouped(["x", "y"], lambda i: None) == ["x", "y"]
