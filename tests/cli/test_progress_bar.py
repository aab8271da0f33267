"""The download bar as a person sees it: rendered frames of a real fetch from a slow server.

A fetch node is built from a throttled HTTP server on 127.0.0.1, once by the
real scheduler with the CLI's BuildProgress rendering to a recording rich
console that behaves like a terminal, once by `aivm build` itself on a
pseudo-terminal. The frames drawn must show the completed amount rising to
the total, with a rate and an ETA.
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
FRAME = re.compile(r"image\.\w+ .*?(\d+\.\d)/(\d+\.\d) MB\s+(\S+ [kM]?B/s)\s+"
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



def _run_on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run `argv` with stdout and stderr on a 120-column pseudo-terminal; what it drew."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))


def test_aivm_build_on_a_terminal_shows_a_moving_bar(tmp_path: Path) -> None:
    """`aivm build` itself, on a pseudo-terminal, downloading from a slow loopback server."""
    import hashlib
    import os
    import sys

    from aivm.paths import CHECKOUT
    from tests.cli.test_surface import CONFIG

    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "k.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBCD t\n")
    with serving() as (base, served):
        served.piece, served.pause = 128 * 1024, 0.06
        config = tmp_path / "config.toml"
        text = CONFIG.format(home=tmp_path, image="IMAGE", firewall="false",
                             sha256=hashlib.sha256(PAYLOAD).hexdigest())
        config.write_text(text.replace('"file://IMAGE"', f'"{base}/img/disk.img"'))
        env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "TERM": "xterm",
               "PYTHONPATH": str(CHECKOUT), "PYTHONDONTWRITEBYTECODE": "1", "no_proxy": "*"}
        screen = _run_on_a_terminal(
            [sys.executable, "-m", "aivm", "--config", str(config), "--store",
             str(tmp_path / "store"), "build", "image.tiny"], env)
    frames = _frames(screen)
    done = [d for d, _, _, _ in frames]
    assert len(frames) >= 5, screen
    assert done == sorted(done) and len(set(done)) >= 4, done
    assert any(rate[0].isdigit() for _, _, rate, _ in frames)
    assert "built image.tiny in" in screen


def test_log_lines_print_above_a_live_bar(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A redirect note logged mid-download goes through the bar's console, not around it."""
    import logging
    import sys

    from aivm.cli.main import CurrentStderr

    real = io.StringIO()
    monkeypatch.setattr(sys, "stderr", real)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    logger = logging.getLogger("aivm.test-live-bar")
    handler = CurrentStderr()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger.addHandler(handler)
    try:
        with BuildProgress(enabled=True, console=console) as ui:
            ui.event(scheduler.BuildEvent("progress", "image.test", advance=1000, total=10_000))
            logger.warning("redirected (HTTP 302) to http://127.0.0.2/x")
            assert "redirected" not in real.getvalue()
    finally:
        logger.removeHandler(handler)
    assert "aivm.test-live-bar: redirected (HTTP 302) to http://127.0.0.2/x" in screen.getvalue()
