"""Options shared by the commands that change the system."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

F = Callable[..., Any]


def note_dry_run(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """A dry run is known to the App before any config is loaded (it writes nothing)."""
    from aivm.cli.app import App

    app = ctx.find_object(App)
    if value and app is not None:
        app.dry_run = True
    return value


def approval(fn: F) -> F:
    """--dry-run / --yes / --yes-sudo, as every plan-executing command takes them."""
    for opt in reversed((
        click.option("--dry-run", is_flag=True, callback=note_dry_run,
                     help="Print the whole plan; change nothing."),
        click.option("-y", "--yes", is_flag=True, help="Approve every step."),
        click.option("--yes-sudo", "--yes_sudo", "yes_sudo", is_flag=True,
                     help="Approve the steps that run as root."),
    )):
        fn = opt(fn)
    return fn


def vm_argument(fn: F) -> F:
    fn = click.argument("vm_name", metavar="[VM]", required=False)(fn)
    return click.option("--vm", "vm_opt", metavar="VM", help="The VM (same as the argument).")(fn)
