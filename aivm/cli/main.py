"""`aivm`: the command tree. Errors print one line of message and one of hint."""

from __future__ import annotations

import importlib
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


# Which module defines each command: a command's module is imported only when that command
# runs or a listing (help, docs) asks for it, so `aivm build` does not pay for the others.
# tests/cli/test_lazy_commands.py checks these tables against the modules.
TOP_COMMANDS: dict[str, str] = {
    "build": "build_cmd:build", "graph": "graph_cmd:graph", "gc": "gc_cmd:gc",
    "config": "config_cmd:config", "up": "lifecycle_cmd:up", "down": "lifecycle_cmd:down",
    "destroy": "lifecycle_cmd:destroy", "restart": "lifecycle_cmd:restart",
    "status": "status_cmd:status", "list": "status_cmd:list_", "ssh": "ssh_cmd:ssh",
    "attach": "workplace_cmd:attach", "detach": "workplace_cmd:detach",
    "code": "workplace_cmd:code", "host": "host_cmd:host", "net": "net_cmd:net",
    "help": "help_cmd:help_", "port": "port_cmd:port", "cp": "cp_cmd:cp",
    "store": "store_cmd:store", "path-info": "inspect_cmd:path_info",
    "why-depends": "inspect_cmd:why_depends", "log": "inspect_cmd:log",
    "lock": "inspect_cmd:lock",
}
VM_COMMANDS: dict[str, str] = {
    "up": "lifecycle_cmd:up", "create": "lifecycle_cmd:up", "down": "lifecycle_cmd:down",
    "restart": "lifecycle_cmd:restart", "delete": "lifecycle_cmd:destroy",
    "destroy": "lifecycle_cmd:destroy", "status": "status_cmd:status",
    "list": "status_cmd:list_", "ssh": "ssh_cmd:ssh", "ssh_config": "ssh_cmd:ssh_config",
    "wait_ip": "ssh_cmd:wait_ip", "attach": "workplace_cmd:attach",
    "detach": "workplace_cmd:detach", "code": "workplace_cmd:code",
    "sync_settings": "workplace_cmd:sync_settings",
    "sync-settings": "workplace_cmd:sync_settings", "update": "host_cmd:update",
    "port": "port_cmd:port", "cp": "cp_cmd:cp",
}


def load_command(where: str) -> click.Command:
    """The command `module:attribute` names in aivm.cli (imports that module)."""
    module, attribute = where.split(":")
    command = getattr(importlib.import_module(f"aivm.cli.{module}"), attribute)
    assert isinstance(command, click.Command), where
    return command


class LazyGroup(AivmGroup):
    """An AivmGroup whose commands are `module:attribute` names, loaded on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(load_command(self.lazy[cmd_name]), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings=CONTEXT, lazy=TOP_COMMANDS)
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


@click.group("vm", cls=LazyGroup, context_settings=CONTEXT, lazy=VM_COMMANDS)
def vm_group() -> None:
    """The seed's `aivm vm ...` commands (aliases of the top-level ones)."""


cli.add_command(vm_group)


def main() -> None:
    cli(prog_name="aivm")
