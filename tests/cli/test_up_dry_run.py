"""`aivm up --dry-run` changes nothing: not even the store."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from aivm.cli.app import App
from aivm.cli.main import cli
from aivm.graph.store import Store


def test_up_dry_run_builds_nothing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    store = tmp_path / "store"
    app = App(store_override=str(store), connect="test:///default")
    result = CliRunner().invoke(cli, ["up", "--dry-run"], obj=app)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "would build 6 node(s):"
    assert "  image.ubuntu-noble: never built" in lines
    assert lines[-1] == ("the activation plan depends on them: `aivm build aivm-2404`, "
                         "then `aivm up --dry-run` shows it")
    assert not store.exists() or Store(store).entries() == []
