"""Build progress on the terminal: one line per node, a bar for byte-counting work.

rich is imported only when something is really built, so a no-op build does
not pay for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aivm.cli.app import App
    from aivm.graph.graph import Graph
    from aivm.graph.scheduler import BuildEvent, BuildReport


def build(app: App, graph: Graph, targets: Iterable[str] | None = None, *,
          quiet: bool = False) -> BuildReport:
    """Build the stale nodes of `graph` with a progress display. In a dry run nothing is
    built: with stale nodes, say which and why, and end the command (exit 0)."""
    from aivm.graph import scheduler

    wanted = None if targets is None else list(targets)
    if app.dry_run:
        return _would_build(app, graph, wanted)
    from aivm.cli import store_cmd

    with BuildProgress(enabled=not quiet) as ui:
        report = scheduler.build(graph, app.registry(), app.store(), app.statcache(),
                                 targets=wanted, jobs=os.cpu_count() or 2, on_event=ui.event,
                                 substitute=store_cmd.substitute_hook(app))
    store_cmd.after_build(app, report)
    return report


def _would_build(app: App, graph: Graph, targets: list[str] | None) -> BuildReport:
    import click

    from aivm.graph import scheduler

    states = scheduler.resolve(graph, app.registry(), app.store(), app.statcache(), targets)
    stale = {name: state.reasons for name, state in states.items() if not state.cached}
    if stale:
        show_would_build(stale)
        click.get_current_context().exit(0)
    return scheduler.BuildReport(states)


def show_would_build(stale: Mapping[str, Sequence[str]], then: str = "") -> None:
    """A dry run's stale nodes and why, and how to see the plan that depends on them."""
    import click

    click.echo(f"would build {len(stale)} node(s):")
    for name, reasons in stale.items():
        click.echo(f"  {name}: {'; '.join(reasons)}")
    click.echo(then or f"the plan depends on them: `aivm build {' '.join(stale)}`, then run "
               "this command again with --dry-run to see it")


class BuildProgress:
    """Renders build events; `console` (a rich Console) replaces stderr, e.g. in tests."""

    def __init__(self, *, enabled: bool, console: Any = None) -> None:
        self.enabled = enabled
        self._console = console
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> BuildProgress:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _ui(self) -> Any:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), TimeElapsedColumn(),
                console=self._console or Console(stderr=True), transient=True,
                disable=not (self._console.is_terminal if self._console else sys.stderr.isatty()))
            self._progress.start()
        return self._progress

    def _print(self, text: str) -> None:
        ui = self._ui()
        if ui.disable:
            print(text, file=self._console.file if self._console else sys.stderr, flush=True)
        else:
            ui.console.print(text, highlight=False, markup=False)

    def event(self, ev: BuildEvent) -> None:
        if not self.enabled:
            return
        name = ev.name
        if ev.kind == "start":
            self._print(f"building {name}: {'; '.join(ev.reasons)}")
        elif ev.kind == "progress":
            self._advance(ev)
        elif ev.kind == "done":
            self._finish(name)
            self._print(f"built {name} in {ev.seconds:.1f} s")
        elif ev.kind == "substituted":
            self._finish(name)
            self._print(f"substituted {name} in {ev.seconds:.1f} s (from a binary cache)")
        elif ev.kind == "reused":
            self._finish(name)
            self._print(f"reused {name} (built meanwhile by another aivm)")
        elif ev.kind == "failed":
            self._finish(name)
            self._print(f"FAILED {name}: {ev.error}")
        elif ev.kind == "skipped":
            self._print(f"skipped {name} (needs {ev.because})")

    def _advance(self, ev: BuildEvent) -> None:
        """A "progress" event moves the bar by `advance` bytes or to `position` bytes."""
        ui = self._ui()
        total = ev.total or None
        if ev.name not in self._tasks:
            self._tasks[ev.name] = ui.add_task(ev.name, total=total)
        if ev.position is not None:
            ui.update(self._tasks[ev.name], completed=ev.position, total=total)
        else:
            ui.update(self._tasks[ev.name], advance=ev.advance or 0, total=total)

    def _finish(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            self._ui().remove_task(task)
