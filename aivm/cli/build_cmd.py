"""`aivm build`: build the stale nodes of the declared graph."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import click

from aivm.cli.app import App
from aivm.cli.options import note_dry_run
from aivm.cli.store_cmd import after_build, substitute_hook, substituter_option, summary

if TYPE_CHECKING:
    from aivm.graph.graph import Graph
    from aivm.graph.scheduler import BuildReport


@click.command()
@click.argument("targets", nargs=-1)
@click.option("--dry-run", is_flag=True, callback=note_dry_run,
              help="Say what would be built; build nothing.")
@click.option("--explain", is_flag=True, help="Say why each stale node is stale.")
@click.option("--keep-going", is_flag=True, help="Build what can be built after a failure.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Parallel builds (default: number of cores).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.option("--check", is_flag=True,
              help="Rebuild existing entries aside and compare their output digests.")
@substituter_option
@click.pass_obj
def build(app: App, targets: tuple[str, ...], dry_run: bool, explain: bool, keep_going: bool,
          jobs: int | None, as_json: bool, check: bool) -> None:
    """Build the nodes of TARGETS (VM names or node names; default: every VM).

    Only stale nodes are built: a node whose key is already in the store is
    reused. `--explain` prints, for each stale node, what changed since the
    last build of the same node.
    """
    from aivm import fastpath
    from aivm.graph import scheduler

    recorder = fastpath.Recorder.start(sys.argv[1:])   # `build [TARGETS] [--json]` only
    graph, names = _graph_for(app, targets)
    store, statcache = app.store(), app.statcache()
    if check:
        _check(app, graph, names, as_json=as_json)
        return
    if dry_run:
        states = scheduler.resolve(graph, app.registry(), store, statcache, names)
        report = scheduler.BuildReport(states)
    else:
        from aivm.cli import progress

        with progress.BuildProgress(enabled=not as_json) as ui:
            report = scheduler.build(graph, app.registry(), store, statcache, targets=names,
                                     jobs=jobs or os.cpu_count() or 2, keep_going=keep_going,
                                     on_event=ui.event, substitute=substitute_hook(app))
        after_build(app, report)
        _lock_drift(app, report)
    _print(report, as_json=as_json, explain=explain or dry_run, dry_run=dry_run,
           hashed_bytes=statcache.hashed_bytes)
    if recorder is not None and not (report.built or report.substituted or report.reused
                                     or statcache.hashed_bytes):
        from aivm.graph.store import MANIFEST

        output = (_json_text(report, dry_run=False, hashed_bytes=0) if as_json
                  else f"nothing to build: {len(report.states)} nodes cached")
        recorder.finish(output + "\n", [
            str(app.config_path), *map(str, statcache.consulted),
            *(str(f.expanduser()) for n in graph.nodes.values() for f in n.files.values()),
            *(str(s.path / MANIFEST) for s in report.states.values())])


def _graph_for(app: App, targets: tuple[str, ...]) -> tuple[Graph, list[str] | None]:
    """Targets name nodes, or VMs (standing for all of that VM's nodes)."""
    graph = app.graph(())
    if not targets:
        return graph, None
    names: list[str] = []
    for target in targets:
        names += [target] if target in graph else list(app.graph((target,)).nodes)
    return graph, names


def _lock_drift(app: App, report: BuildReport) -> None:
    """Something was built: say which tools that shaped it differ from aivm.lock."""
    if not report.built:
        return
    from aivm import lock

    kinds = {report.states[n].kind for n in report.built}
    for line in lock.tool_drift(lock.lock_path(app.config_path), kinds):
        app.notify(f"note: built with other tools than the lock: {line}")


def _check(app: App, graph: Graph, names: list[str] | None, *, as_json: bool) -> None:
    """`--check`: rebuild each built node aside; report digests and reproducible kinds."""
    from aivm.graph import scheduler
    from aivm.inspect import check

    store = app.store()
    states = scheduler.resolve(graph, app.registry(), store, app.statcache(), names)
    results = check.check(graph, app.registry(), store, states, list(states))
    kinds = check.by_kind(results)
    if as_json:
        click.echo(json.dumps({"checked": [r.to_json() for r in results], "kinds": kinds},
                              indent=2))
    else:
        for r in results:
            why = f": {r.detail}" if r.detail else ""
            click.echo(f"{r.name} ({r.kind}): {r.status}{why}")
        click.echo("reproducible kinds: " + (", ".join(k for k, v in kinds.items()
                                                       if v == "reproducible") or "none"))
        differing = [k for k, v in kinds.items() if v == "differs"]
        if differing:
            click.echo("not reproducible: " + ", ".join(differing))
    if any(r.status in ("differs", "failed") for r in results):
        raise click.exceptions.Exit(1)


def _json_text(report: BuildReport, *, dry_run: bool, hashed_bytes: int) -> str:
    data = report.to_json()
    data["dry_run"] = dry_run
    data["hashed_bytes"] = hashed_bytes  # bytes of local input files read to key them
    return json.dumps(data, indent=2)


def _print(report: BuildReport, *, as_json: bool, explain: bool, dry_run: bool,
           hashed_bytes: int) -> None:
    if as_json:
        click.echo(_json_text(report, dry_run=dry_run, hashed_bytes=hashed_bytes))
        return
    stale = [n for n, s in report.states.items() if not s.cached]
    total = len(report.states)
    if dry_run:
        click.echo(f"{len(stale)} of {total} nodes would be built" if stale
                   else f"nothing to build: {total} nodes cached")
    elif report.substituted:
        click.echo(f"{summary(report)} of {total} nodes")
    elif report.built:
        click.echo(f"built {len(report.built)} of {total} nodes")
    else:
        click.echo(f"nothing to build: {total} nodes cached")
    if explain:
        for name in stale:
            s = report.states[name]
            click.echo(f"  {name} ({s.kind}): {'; '.join(s.reasons)}")
