"""The download bar as a person sees it: rendered frames of a real fetch from a slow server.

A fetch node is built by the real scheduler from a throttled HTTP server on
127.0.0.1; the build events go to the CLI's BuildProgress, which renders to a
recording rich console that behaves like a terminal. The frames it drew must
show the completed amount rising to the total, with a rate and an ETA.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from aivm.cli.progress import BuildProgress
from aivm.graph import scheduler
from aivm.graph.graph import Graph
from aivm.graph.statcache import StatCache
from aivm.graph.store import Store
from aivm.recipes import REGISTRY
from tests.recipes.test_fetch import PAYLOAD, fetch_node, serving

# "image.test ━━━━━━━━━━━━━━━━   1.3/3.2 MB 1.1 MB/s 0:00:02 0:00:01": done/total, rate,
# time remaining, time elapsed
FRAME = re.compile(r"image\.test .*?(\d+\.\d)/(\d+\.\d) MB\s+(\S+ [kM]?B/s)\s+"
                   r"(\d:\d\d:\d\d|-:--:--)\s+\d:\d\d:\d\d")


def _frames(text: str) -> list[tuple[float, float, str, str]]:
    return [(float(m[1]), float(m[2]), m[3], m[4]) for m in FRAME.finditer(text)]


def test_download_bar_moves_to_the_total_with_rate_and_eta(tmp_path: Path) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    store = Store(tmp_path / "store").ensure()
    with serving() as (base, served):
        served.piece, served.pause = 128 * 1024, 0.06  # about 2 MB/s: 1.5 s for 3.2 MB
        node = fetch_node(f"{base}/img/disk.img")
        with BuildProgress(enabled=True, console=console) as ui:
            report = scheduler.build(Graph([node]), REGISTRY, store, StatCache(None),
                                     on_event=ui.event)
    assert report.built == [node.name]
    frames = _frames(screen.getvalue())
    done = [d for d, _, _, _ in frames]
    total = round(len(PAYLOAD) / 1e6, 1)
    assert len(frames) >= 5, screen.getvalue()
    assert {t for _, t, _, _ in frames} == {total}
    assert done == sorted(done) and len(set(done)) >= 4, done   # it moves, never back
    assert max(done) >= total - 0.2                            # and gets (nearly) there
    assert any(rate[0].isdigit() for _, _, rate, _ in frames)  # a rate, not "?"
    assert any(eta[0].isdigit() and eta != "0:00:00" for _, _, _, eta in frames)
    assert "built image.test in" in screen.getvalue()

