"""The CLI's side of the core facade (aivm/session.py): click and rich callbacks, and
opening a session from a command's options."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import click

from aivm.cli.app import App
from aivm.session import Callbacks, Flags, Policy, Session, policy_for

if TYPE_CHECKING:
    from aivm.graph.graph import Graph
    from aivm.graph.scheduler import BuildReport
    from aivm.session import PhaseSink

__all__ = ["Flags", "Policy", "Session", "callbacks", "open_vm", "policy", "vm_name"]


def _note(text: str) -> None:
    click.echo(text, err=True)


def _warn(text: str) -> None:
    click.secho(text, fg="yellow", err=True)


def _alarm(text: str) -> None:
    click.secho(text, fg="red", bold=True, err=True)


def _say(text: str) -> None:
    click.echo(text)


def _waiting(vm: str, enabled: bool) -> AbstractContextManager[PhaseSink]:
    from aivm.cli.waiting import PhaseDisplay

    return PhaseDisplay(vm, enabled=enabled)


def callbacks(app: App) -> Callbacks:
    """The terminal's callbacks: click for lines, rich for the build and the wait."""

    def build(graph: Graph, quiet: bool) -> BuildReport:
        from aivm.cli import progress

        return progress.build(app, graph, quiet=quiet)

    return Callbacks(note=_note, warn=_warn, alarm=_alarm, say=_say, build=build,
                     waiting=_waiting)


def open_vm(app: App, name: str | None, flags: Flags | None = None, *,
            implicit: bool = False) -> Session:
    """The session of the named VM (None or ".": the folder's, active or only one)."""
    return Session.open(app, name, flags=flags or Flags(), ui=callbacks(app),
                        implicit=implicit)


def policy(app: App, flags: Flags) -> Policy:
    """The policy of a command that needs no VM (defaults without a config)."""
    return policy_for(app, flags)


def vm_name(arg: str | None, opt: str | None) -> str | None:
    if arg and opt and arg != opt:
        raise click.UsageError(f"two different VMs named: {arg} and --vm {opt}")
    return opt or arg
