"""What the lifecycle commands share: resolve the VM, build it, connect, run a plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aivm.cli.app import App

if TYPE_CHECKING:
    from aivm.activate.approve import Outcome, Policy
    from aivm.activate.firewall import Live, Probe
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

    def policy(self, *, yes: bool, yes_sudo: bool, dry_run: bool) -> Policy:
        from aivm.activate import approve

        return approve.Policy.of(self.cfg.behavior, yes=yes or self.app.yes, yes_sudo=yes_sudo,
                                 dry_run=dry_run)

    def execute(self, plan: Plan, *, yes: bool, yes_sudo: bool, dry_run: bool) -> Outcome:
        from aivm.activate import approve

        return approve.execute(plan, self.policy(yes=yes, yes_sudo=yes_sudo, dry_run=dry_run))

    def read_firewall(self, probe: Probe, *, yes: bool, yes_sudo: bool, dry_run: bool) -> Live:
        """Phase one: the read-only root probe of a network's table, approved like a step."""
        from aivm.activate import approve

        policy = self.policy(yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)
        return probe.read(approve.probe(probe.step(), policy))

    def probed(self, art: Artifacts, *, yes: bool, yes_sudo: bool, dry_run: bool) -> Artifacts:
        """`art` with what the firewall probe saw, for `plan_up` / `plan_update`."""
        import dataclasses

        from aivm.activate.up import firewall_probe

        seen = self.read_firewall(firewall_probe(art), yes=yes, yes_sudo=yes_sudo,
                                  dry_run=dry_run)
        return dataclasses.replace(art, nft=seen)


def vm_name(arg: str | None, opt: str | None) -> str | None:
    if arg and opt and arg != opt:
        raise click.UsageError(f"two different VMs named: {arg} and --vm {opt}")
    return opt or arg
