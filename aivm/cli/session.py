"""What the lifecycle commands share: resolve the VM, build it, connect, run a plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aivm.cli.app import App

if TYPE_CHECKING:
    from aivm.activate.approve import Outcome
    from aivm.activate.plan import Plan
    from aivm.activate.up import Artifacts
    from aivm.config.schema import Config, Vm
    from aivm.graph.scheduler import BuildReport


@dataclass
class Session:
    app: App
    cfg: Config
    vm: Vm

    @classmethod
    def open(cls, app: App, name: str | None, *, implicit: bool = False) -> Session:
        from aivm.config.resolve import resolve_vm

        cfg = app.config(implicit=implicit)
        if name == ".":
            name = None
        return cls(app, cfg, resolve_vm(cfg, name, Path.cwd()))

    def warn_accel(self) -> None:
        from aivm import model

        warning = model.accel_for(self.app, self.vm.accel).warning
        if warning:
            click.secho(f"warning: {warning}", fg="yellow", err=True)

    def build(self, *, quiet: bool = False) -> BuildReport:
        """Build the VM's stale nodes; a dry run builds nothing (aivm/cli/progress.py)."""
        from aivm.cli import progress

        return progress.build(self.app, self.app.graph((self.vm.name,)), quiet=quiet)

    def artifacts(self, report: BuildReport) -> Artifacts:
        from aivm.activate.up import Artifacts

        network = self.cfg.network(self.vm.network)
        assert network is not None  # vm_graph already refused an unknown network
        return Artifacts(self.vm, network, report.states)

    def conn(self) -> Any:
        from aivm.activate import live

        if "conn" not in self.app._cache:
            self.app._cache["conn"] = live.connect(self.app.connect_uri)
        return self.app._cache["conn"]

    def execute(self, plan: Plan, *, yes: bool, yes_sudo: bool, dry_run: bool) -> Outcome:
        from aivm.activate import approve

        behavior = self.cfg.behavior
        policy = approve.Policy(yes=yes or self.app.yes, yes_sudo=yes_sudo or behavior.yes_sudo,
                                dry_run=dry_run,
                                auto_approve_readonly_sudo=behavior.auto_approve_readonly_sudo)
        return approve.execute(plan, policy)


def vm_name(arg: str | None, opt: str | None) -> str | None:
    if arg and opt and arg != opt:
        raise click.UsageError(f"two different VMs named: {arg} and --vm {opt}")
    return opt or arg
