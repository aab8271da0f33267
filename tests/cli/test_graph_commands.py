"""`aivm build`, `aivm graph`, `aivm gc` in-process, on the fake chain graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aivm.cli.app import App
from aivm.cli.main import cli
from aivm.errors import ConfigError
from aivm.graph.graph import Graph
from aivm.graph.store import Store
from tests.graph.fakes import FakeRegistry, chain_graph


@pytest.fixture
def invoke(tmp_path: Path):
    registry = FakeRegistry(tmp_path / "templates")
    overrides: dict[str, dict] = {}

    def graph(app: App, vms: tuple[str, ...]) -> Graph:
        if vms:  # like the real model: a target that is no node must be a declared VM
            raise ConfigError(f"no VM named {vms[0]!r}", hint="h", reason="unknown-vm")
        return Graph(chain_graph(**overrides))

    def run(*args: str, overrides_: dict | None = None):
        if overrides_ is not None:
            overrides.clear()
            overrides.update(overrides_)
        app = App(store_override=str(tmp_path / "store"), registry_factory=lambda: registry,
                  graph_factory=graph)
        return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)

    return run


def test_build_then_noop_json(invoke) -> None:
    first = invoke("build", "--json")
    assert first.exit_code == 0
    assert sorted(json.loads(first.output)["built"]) == ["base", "mid", "side", "top"]
    second = invoke("build", "--json")
    assert json.loads(second.output)["built"] == []
    assert invoke("build").output == "nothing to build: 4 nodes cached\n"


def test_build_explain_after_param_change(invoke) -> None:
    invoke("build")
    out = invoke("build", "--dry-run", overrides_={"side": {"text": "S2"}}).output
    assert out == ("2 of 4 nodes would be built\n"
                   '  side (text): param text "S" → "S2"\n'
                   "  top (text): input side changed\n")


def test_build_failure_is_one_error_line(invoke) -> None:
    result = invoke("build", overrides_={"mid": {"fail": True}})
    assert result.exit_code == 1
    assert "error: 1 node(s) failed to build: mid: mid was told to fail" in result.stderr
    assert "hint: fix the cause" in result.stderr


def test_unknown_target(invoke) -> None:
    result = invoke("build", "nope")
    assert result.exit_code == 2
    assert result.stderr == "error: no VM named 'nope'\nhint: h\n"


def test_graph_formats(invoke) -> None:
    invoke("build", "side")
    text = invoke("graph").output.splitlines()
    assert text[0].startswith("top [text] waiting")
    assert any("side: side [text] cached" in line for line in text)
    assert any("base: base [text] stale" in line and "never built" in line for line in text)
    dot = invoke("graph", "--format", "dot").output
    assert dot.startswith("digraph aivm {") and '"mid" -> "top" [label="mid"];' in dot
    mermaid = invoke("graph", "--format", "mermaid").output
    assert mermaid.startswith("flowchart LR") and "-->|base|" in mermaid
    data = json.loads(invoke("graph", "--format", "json").output)
    assert {n["name"]: n["state"] for n in data["nodes"]} == {
        "base": "stale", "mid": "waiting", "side": "cached", "top": "waiting"}


def test_gc_dry_run_and_removal(invoke, tmp_path: Path) -> None:
    invoke("build")
    dry = invoke("gc", "--dry-run")
    assert dry.exit_code == 0 and "0 live, 4 dead" in dry.output
    assert len(Store(tmp_path / "store").entries()) == 4
    done = invoke("gc", "--yes")
    assert "removed 4 entries" in done.output
    assert json.loads(invoke("gc", "--dry-run", "--json").output)["dead"] == []
