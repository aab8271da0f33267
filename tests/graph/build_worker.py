"""Run a build of the fake chain graph in its own process (for kill and race tests).

usage: python -m tests.graph.build_worker STORE TEMPLATES DELAY LOGFILE
Each node built is appended to LOGFILE as one line (O_APPEND, so two workers can share it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aivm.graph import scheduler
from aivm.graph.graph import Graph
from aivm.graph.statcache import StatCache
from aivm.graph.store import Store
from tests.graph.fakes import FakeRegistry, chain_graph


def main() -> None:
    store_dir, templates, delay, logfile = sys.argv[1:5]
    store = Store(Path(store_dir)).ensure()
    registry = FakeRegistry(Path(templates), delay=float(delay))
    report = scheduler.build(Graph(chain_graph()), registry, store,
                             StatCache(store.root / "cache" / "stat.json"), jobs=2)
    fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for name in report.built:
        os.write(fd, f"{name}\n".encode())
    os.close(fd)


if __name__ == "__main__":
    main()
