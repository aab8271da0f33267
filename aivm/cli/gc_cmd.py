"""`aivm gc`: remove store entries no root reaches."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from aivm.cli.app import App

if TYPE_CHECKING:
    from aivm.graph.gc import GcResult, RootInfo


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option("--print-live", is_flag=True, help="List the entries kept.")
@click.option("--print-dead", is_flag=True, help="List the entries to remove.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before removing.")
@click.option("--max-freed", metavar="SIZE", help="Stop once SIZE is freed (oldest first): 2G.")
@click.option("--older-than", metavar="DURATION",
              help="Only unrooted entries created at least DURATION ago: 30d, 12h.")
@click.option("--print-roots", is_flag=True, help="List each root and what holds it.")
@click.option("--host", "host", metavar="USER@SERVER",
              help="Collect the store of that host (where its VMs run) over ssh.")
@click.pass_obj
def gc(app: App, dry_run: bool, print_live: bool, print_dead: bool, as_json: bool,
       yes: bool, max_freed: str | None, older_than: str | None, print_roots: bool,
       host: str | None) -> None:
    """Remove store entries that no gc root (a defined VM, an explicit root) reaches."""
    from aivm.graph import gc as collector
    from aivm.inspect.units import parse_duration, parse_size

    if host:
        _remote(app, host, dry_run=dry_run, as_json=as_json, yes=yes, print_dead=print_dead)
        return
    store = app.store()
    if print_roots:
        _print_roots(collector.roots(store.ensure()), as_json)
        return
    preview = collector.collect(
        store, dry_run=True, max_freed=None if max_freed is None else parse_size(max_freed),
        older_than=None if older_than is None else parse_duration(older_than))
    if as_json:
        click.echo(json.dumps(_json(preview, dry_run), indent=2))
    else:
        _describe(preview, print_live=print_live, print_dead=print_dead or dry_run)
    if dry_run or not preview.dead:
        return
    if not (yes or app.yes) and not click.confirm(f"remove {len(preview.dead)} entries?",
                                                  default=False):
        raise click.Abort()
    done = collector.collect(store, dry_run=False, shown=preview)  # only what was shown
    if not as_json:
        click.echo(f"removed {len(done.dead)} entries, freed {_size(done.dead_bytes)}")
        if done.kept:
            click.echo(f"kept {len(done.kept)} shown entries: rooted or gone since the preview")


def _remote(app: App, host: str, *, dry_run: bool, as_json: bool, yes: bool,
            print_dead: bool) -> None:
    """`--host`: the remote store, marked here, swept there (aivm/remote/gc.py)."""
    from aivm.remote import gc as remote_gc
    from aivm.remote.address import parse

    conn, preview = remote_gc.preview(parse(host))
    if as_json:
        click.echo(json.dumps(preview.to_json() | {"dry_run": dry_run}, indent=2))
    else:
        for name in preview.dead if (print_dead or dry_run) else ():
            click.echo(f"dead {preview.host}:{name}")
        click.echo(f"{preview.host}: {len(preview.live)} live, {len(preview.dead)} dead "
                   f"({_size(preview.dead_bytes)} to free)")
    if dry_run or not preview.dead:
        return
    if not (yes or app.yes) and not click.confirm(
            f"remove {len(preview.dead)} entries on {preview.host}?", default=False):
        raise click.Abort()
    removed = remote_gc.remove(conn, preview)
    if not as_json:
        click.echo(f"removed {len(removed)} entries on {preview.host}, "
                   f"freed {_size(preview.dead_bytes)}")


def _describe(result: GcResult, *, print_live: bool, print_dead: bool) -> None:
    if print_live:
        for path in result.live:
            click.echo(f"live {path}")
    if print_dead:
        for path in result.dead:
            click.echo(f"dead {path}")
    click.echo(f"{len(result.live)} live, {len(result.dead)} dead "
               f"({_size(result.dead_bytes)} to free)")
    _booted_states(result)


def _booted_states(result: GcResult) -> None:
    """Booted states (memory + disk layer) are large: each one with its size."""
    from aivm.graph.store import tree_size

    for path, state in [(p, "live") for p in result.live] + [(p, "dead") for p in result.dead]:
        if path.name.endswith(".booted-state"):
            click.echo(f"booted state {path.name}: {_size(tree_size(path))}, {state}")


def _print_roots(roots: list[RootInfo], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"roots": [r.to_json() for r in roots]}, indent=2))
        return
    for r in roots:
        held = ", ".join(r.entries) or "(nothing)"
        what = {"vm": f"VM {r.holder}", "explicit": f"explicit {r.holder}",
                "pending": f"running aivm ({r.holder})"}[r.kind]
        click.echo(f"{r.link} -> {held}  [{what}]{' (dangling)' if r.dangling else ''}")
    click.echo(f"{len(roots)} roots")


def _json(result: GcResult, dry_run: bool) -> dict[str, object]:
    return {"live": [str(p) for p in result.live], "dead": [str(p) for p in result.dead],
            "dead_bytes": result.dead_bytes, "dry_run": dry_run,
            "dangling_roots": list(result.dangling_roots)}


def _size(n: int) -> str:
    from aivm.inspect.units import human_size

    return human_size(n)
