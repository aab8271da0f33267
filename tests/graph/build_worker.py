"""Run a build of the fake chain graph in its own process (for kill and race tests).

usage: python -m tests.graph.build_worker STORE TEMPLATES DELAY LOGFILE [hold] [SIDE_TEXT]
Each node built is appended to LOGFILE as one line (O_APPEND, so two workers can share it).
With `hold`, the worker then prints "built" and waits for its stdin to close, keeping its
Store (and so its pending roots), like `aivm up` waiting at a prompt. SIDE_TEXT changes
the `side` node (and `top`), for a second graph.
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
    hold = sys.argv[5:6] == ["hold"]
    side = {"side": {"text": sys.argv[6]}} if len(sys.argv) > 6 else {}
    store = Store(Path(store_dir)).ensure()
    registry = FakeRegistry(Path(templates), delay=float(delay))
    report = scheduler.build(Graph(chain_graph(**side)), registry, store,
                             StatCache(store.root / "cache" / "stat.json"), jobs=2)
    fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for name in report.built:
        os.write(fd, f"{name}\n".encode())
    os.close(fd)
    if hold:
        print("built", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
