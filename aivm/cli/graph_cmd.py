"""`aivm graph`: the declared graph with each node's state."""

from __future__ import annotations

import click

from aivm.cli.app import App


@click.command()
@click.argument("vms", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "mermaid", "json"]),
              default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_obj
def graph(app: App, vms: tuple[str, ...], fmt: str, as_json: bool) -> None:
    """Show the build graph of VMS (default: every VM): cached, stale (and why), waiting."""
    from aivm.graph import render, scheduler

    fmt = "json" if as_json else fmt
    g = app.graph(vms)
    states = scheduler.resolve(g, app.registry(), app.store(), app.statcache())
    click.echo(render.FORMATS[fmt](g, states))
