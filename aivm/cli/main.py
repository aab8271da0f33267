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
    logging.basicConfig(level=level, format="%(name)s: %(message)s", handlers=[CurrentStderr()])


class CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to `sys.stderr` as it is then: while a progress bar is live, rich
    has swapped it for a proxy that prints above the bar (a download's redirect note)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


@click.group("vm", cls=AivmGroup, context_settings=CONTEXT)
def vm_group() -> None:
    """The seed's `aivm vm ...` commands (aliases of the top-level ones)."""


def _register() -> None:
    from aivm.cli import (
        build_cmd,
        config_cmd,
        cp_cmd,
        gc_cmd,
        graph_cmd,
        help_cmd,
        host_cmd,
        inspect_cmd,
        lifecycle_cmd,
        net_cmd,
        port_cmd,
        ssh_cmd,
        status_cmd,
        store_cmd,
        workplace_cmd,
    )

    top = (build_cmd.build, graph_cmd.graph, gc_cmd.gc, config_cmd.config, lifecycle_cmd.up,
           lifecycle_cmd.down, lifecycle_cmd.destroy, lifecycle_cmd.restart, status_cmd.status,
           status_cmd.list_, ssh_cmd.ssh)
    aliases = {"up": lifecycle_cmd.up, "create": lifecycle_cmd.up, "down": lifecycle_cmd.down,
               "restart": lifecycle_cmd.restart, "delete": lifecycle_cmd.destroy,
               "destroy": lifecycle_cmd.destroy, "status": status_cmd.status,
               "list": status_cmd.list_, "ssh": ssh_cmd.ssh, "ssh_config": ssh_cmd.ssh_config,
               "wait_ip": ssh_cmd.wait_ip}
    for module in (workplace_cmd, host_cmd, net_cmd, help_cmd, port_cmd, cp_cmd, store_cmd,
                   inspect_cmd):
        top += tuple(module.TOP)
        aliases.update(module.VM_ALIASES)
    for command in top:
        cli.add_command(command)
    for name, command in aliases.items():
        vm_group.add_command(command, name)
    cli.add_command(vm_group)


_register()


def main() -> None:
    cli(prog_name="aivm")
