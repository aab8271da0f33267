"""`aivm`: the command tree. Errors print one line of message and one of hint."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from aivm import __version__
from aivm.cli.app import App
from aivm.errors import AivmError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class AivmGroup(click.Group):
    """A group that turns AivmError into `error:`/`hint:` lines and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AivmError as exc:
            app = ctx.obj if isinstance(ctx.obj, App) else None
            if app is not None and app.debug:
                raise
            report(exc)
            ctx.exit(exc.exit_code)


def report(exc: AivmError) -> None:
    click.secho(f"error: {exc.message}", fg="red", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)


@click.group(cls=AivmGroup, context_settings=CONTEXT)
@click.option("--config", "config_path", metavar="PATH", help="Config file (default: XDG config).")
@click.option("--store", "store_path", metavar="PATH", help="Store root (or AIVM_STORE).")
@click.option("--connect", metavar="URI", default="", help="libvirt URI (default qemu:///system).")
@click.option("-v", "--verbose", count=True, help="More output; repeat for more.")
@click.option("--debug", is_flag=True, help="Show tracebacks and every command run.")
@click.version_option(__version__, prog_name="aivm")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, store_path: str | None, connect: str,
        verbose: int, debug: bool) -> None:
    """Local libvirt sandbox VMs for coding agents, built from a content-addressed graph."""
    app = ctx.ensure_object(App)
    app.config_override = config_path or app.config_override
    app.store_override = store_path or app.store_override
    app.connect = connect or app.connect
    app.verbose, app.debug = verbose, debug
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(name)s: %(message)s", stream=sys.stderr)


def _register() -> None:
    from aivm.cli import build_cmd, gc_cmd, graph_cmd

    for command in (build_cmd.build, graph_cmd.graph, gc_cmd.gc):
        cli.add_command(command)
    for module, name in _OPTIONAL:
        try:
            mod = __import__(f"aivm.cli.{module}", fromlist=[name])
        except ImportError as exc:
            if f"aivm.cli.{module}" not in str(exc):
                raise
            continue
        cli.add_command(getattr(mod, name))


# command modules written by later work; registered when present
_OPTIONAL: list[tuple[str, str]] = [("config_cmd", "config")]

_register()


def main() -> None:
    cli(prog_name="aivm")
