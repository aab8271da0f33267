"""`python -m tests.cache.fake_cli STORE CONFIG TEMPLATES ARGS...`: aivm's CLI on the fake
chain graph (tests/graph/fakes.py), so a test can run it inside a network namespace."""

from __future__ import annotations

import sys
from pathlib import Path

from aivm.cli.app import App
from aivm.cli.main import cli
from aivm.graph.graph import Graph
from tests.graph.fakes import FakeRegistry, chain_graph


def main(argv: list[str]) -> None:
    store, config, templates, *args = argv
    registry = FakeRegistry(Path(templates))
    app = App(config_override=config, store_override=store, registry_factory=lambda: registry,
              graph_factory=lambda _app, _vms: Graph(chain_graph(**_big())))
    cli.main(args, obj=app, prog_name="aivm")


def _big() -> dict[str, dict[str, str]]:
    """A bigger `base` (a few MiB): chunked upload and streamed download are exercised."""
    return {"base": {"text": "B" * (5 << 20)}}


if __name__ == "__main__":
    main(sys.argv[1:])
