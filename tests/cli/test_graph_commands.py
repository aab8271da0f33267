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


def test_gc_with_a_broken_config_fails_instead_of_using_the_default_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Collecting the wrong store deletes data: a config that does not load is an error."""
    monkeypatch.delenv("AIVM_STORE", raising=False)
    config = tmp_path / "config.toml"
    config.write_text("[store]\nroot = 'elsewhere'\n[[vms]\nname = 'x'\n")
    app = App(config_override=str(config))
    result = CliRunner().invoke(cli, ["gc", "--dry-run"], obj=app, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {config}")


def test_gc_without_a_config_uses_the_default_store(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("AIVM_STORE", raising=False)
    app = App(config_override=str(tmp_path / "absent.toml"))
    assert app.store().root.name == "store"
    assert app._configured_store_root() == ""


def test_gc_removes_only_the_entries_it_showed(invoke, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process builds while `aivm gc` waits for its answer: its entries stay."""
    import subprocess
    import sys

    import click

    invoke("build")
    store = Store(tmp_path / "store")
    shown = set(store.entries())

    workers: list[subprocess.Popen[str]] = []

    def confirm_after_a_build(text: str, default: bool = False) -> bool:
        workers.append(subprocess.Popen(  # builds side and top anew, reuses base and mid
            [sys.executable, "-m", "tests.graph.build_worker", str(store.root),
             str(tmp_path / "templates"), "0", str(tmp_path / "log"), "hold", "S2"],
            cwd=Path(__file__).resolve().parents[2], text=True, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        assert workers[0].stdout is not None and workers[0].stdout.readline() == "built\n"
        return True  # the worker waits, holding what it built and reused

    monkeypatch.setattr(click, "confirm", confirm_after_a_build)
    try:
        done = invoke("gc")
    finally:
        for worker in workers:
            worker.communicate(input="", timeout=30)
    lines = done.output.splitlines()
    assert lines[0].startswith("0 live, 4 dead (") and lines[1].startswith("removed 2 entries")
    assert lines[2:] == ["kept 2 shown entries: rooted or gone since the preview"]
    later = {e.name.split("-", 1)[1] for e in store.entries()}
    assert sorted(later) == ["base", "mid", "side", "top"]  # side and top: the new ones
    assert not (set(store.entries()) & shown) - {e for e in shown if e.name.endswith(
        ("-base", "-mid"))}
