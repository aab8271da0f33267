"""`aivm build`: build the stale nodes of the declared graph."""

from __future__ import annotations

import json
import os

import click

from aivm.cli.app import App
from aivm.cli.options import note_dry_run
from aivm.cli.store_cmd import after_build, substitute_hook, substituter_option, summary


@click.command()
@click.argument("targets", nargs=-1)
@click.option("--dry-run", is_flag=True, callback=note_dry_run,
              help="Say what would be built; build nothing.")
@click.option("--explain", is_flag=True, help="Say why each stale node is stale.")
@click.option("--keep-going", is_flag=True, help="Build what can be built after a failure.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Parallel builds (default: number of cores).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@substituter_option
@click.pass_obj
def build(app: App, targets: tuple[str, ...], dry_run: bool, explain: bool, keep_going: bool,
          jobs: int | None, as_json: bool) -> None:
    """Build the nodes of TARGETS (VM names or node names; default: every VM).

    Only stale nodes are built: a node whose key is already in the store is
    reused. `--explain` prints, for each stale node, what changed since the
    last build of the same node.
    """
    from aivm.graph import scheduler

    graph, names = _graph_for(app, targets)
    store, statcache = app.store(), app.statcache()
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
    _print(report, as_json=as_json, explain=explain or dry_run, dry_run=dry_run,
           hashed_bytes=statcache.hashed_bytes)


def _graph_for(app: App, targets: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """Targets name nodes, or VMs (standing for all of that VM's nodes)."""
    graph = app.graph(())
    if not targets:
        return graph, None
    names: list[str] = []
    for target in targets:
        names += [target] if target in graph else list(app.graph((target,)).nodes)
    return graph, names


def _print(report, *, as_json: bool, explain: bool, dry_run: bool,  # type: ignore[no-untyped-def]
           hashed_bytes: int) -> None:
    if as_json:
        data = report.to_json()
        data["dry_run"] = dry_run
        data["hashed_bytes"] = hashed_bytes  # bytes of local input files read to key them
        click.echo(json.dumps(data, indent=2))
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
