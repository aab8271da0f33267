"""`aivm up`, `down`, `destroy`, `restart`: a VM's life on libvirt."""

from __future__ import annotations

import json

import click

from aivm.cli.app import App
from aivm.cli.options import approval, vm_argument
from aivm.cli.session import Flags, open_vm
from aivm.cli.session import vm_name as vm_name_of
from aivm.cli.store_cmd import substituter_option
from aivm.session import UpOptions


@click.command()
@vm_argument
@approval
@click.option("--recreate", is_flag=True,
              help="Throw the VM's disk away and take a fresh one from the store (fast).")
@click.option("--timeout", type=float, default=900.0, show_default=True,
              help="Seconds to wait for the guest's ssh.")
@click.option("--no-wait", is_flag=True, help="Do not wait for ssh.")
@click.option("--json", "as_json", is_flag=True, help="Report as JSON on stdout.")
@substituter_option
@click.pass_obj
def up(app: App, vm_name: str | None, vm_opt: str | None, dry_run: bool, yes: bool,
       yes_sudo: bool, recreate: bool, timeout: float, no_wait: bool, as_json: bool) -> None:
    """Build the VM's graph (stale nodes only), activate it on libvirt, wait for ssh.

    With --dry-run nothing is built either: stale nodes are listed with their
    reasons, and the activation plan is shown once everything is built.
    """
    session = open_vm(app, vm_name_of(vm_name, vm_opt), Flags(yes, yes_sudo, dry_run),
                      implicit=True)
    done = session.up(UpOptions(recreate=recreate, timeout=timeout, wait=not no_wait,
                                show_build=not as_json, show_wait=not as_json))
    if done.would_build and not as_json:
        from aivm.cli.progress import show_would_build

        show_would_build(done.would_build, f"the activation plan depends on them: `aivm build "
                         f"{session.vm.name}`, then `aivm up --dry-run` shows it")
    elif as_json:
        click.echo(json.dumps(done.report, indent=2))


@click.command()
@vm_argument
@approval
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds of ACPI shutdown before the VM is powered off.")
@click.pass_obj
def down(app: App, vm_name: str | None, vm_opt: str | None, dry_run: bool, yes: bool,
         yes_sudo: bool, timeout: float) -> None:
    """Shut the VM down (ACPI, then power off after --timeout)."""
    open_vm(app, vm_name_of(vm_name, vm_opt), Flags(yes, yes_sudo, dry_run)).down(timeout)


@click.command()
@vm_argument
@approval
@click.pass_obj
def destroy(app: App, vm_name: str | None, vm_opt: str | None, dry_run: bool, yes: bool,
            yes_sudo: bool) -> None:
    """Stop and undefine the VM, remove its disk and gc roots (the store is kept)."""
    open_vm(app, vm_name_of(vm_name, vm_opt), Flags(yes, yes_sudo, dry_run)).destroy()


@click.command()
@vm_argument
@approval
@click.pass_obj
def restart(app: App, vm_name: str | None, vm_opt: str | None, dry_run: bool, yes: bool,
            yes_sudo: bool) -> None:
    """Shut the VM down and start it again."""
    open_vm(app, vm_name_of(vm_name, vm_opt), Flags(yes, yes_sudo, dry_run)).restart()
