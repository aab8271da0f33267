"""`aivm ssh`, `aivm vm ssh_config`, `aivm vm wait_ip`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from aivm.cli.app import App
from aivm.cli.options import approval, vm_argument
from aivm.cli.session import Flags, Session, open_vm
from aivm.cli.session import vm_name as vm_name_of
from aivm.cli.workplace_cmd import allow_sensitive_option
from aivm.errors import AivmError

if TYPE_CHECKING:
    from aivm.guest.ssh import Target


def guest_target(session: Session) -> Target:
    """The ssh target of a running VM; a clear error when it is not running."""
    found = session.running_target()
    if found is None:
        name = session.vm.name
        raise AivmError(f"VM {name} is not running", hint=f"start it: aivm up {name}",
                        reason="vm-not-running")
    return found


class DashCommand(click.Command):
    """A command whose words after `--` are the remote command, never the VM: click alone
    would take the first of them as the VM argument (`aivm ssh -- echo ok`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta[AFTER_DASH] = tuple(args[cut + 1:])
            args = args[:cut]
        return super().parse_args(ctx, args)


AFTER_DASH = "aivm.after_dash"


def remote_command(ctx: click.Context, before: tuple[str, ...]) -> tuple[str, ...]:
    """The words before `--` that are not the VM, then everything after `--`."""
    return before + tuple(ctx.meta.get(AFTER_DASH, ()))


@click.command(cls=DashCommand, context_settings={"ignore_unknown_options": True})
@click.argument("vm_name", metavar="[VM|.]", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--vm", "vm_opt", metavar="VM", help="The VM (same as the argument).")
@allow_sensitive_option
@approval
@click.pass_obj
def ssh(app: App, vm_name: str | None, command: tuple[str, ...], vm_opt: str | None,
        allow_sensitive: bool, dry_run: bool, yes: bool, yes_sudo: bool) -> None:
    """Open a shell in the VM, or run COMMAND there (`aivm ssh [VM] -- cmd args`).

    Without a VM, the active one. Everything after `--` is the command; its
    exit code is aivm's. `aivm ssh .` works from a project folder: it brings
    the folder's VM up if needed (creating the config and VM on first use), attaches the folder,
    restores the VM's other attachments, and opens the shell in the folder.
    """
    from aivm.guest import ssh as guest_ssh
    from aivm.run import run_foreground

    command = remote_command(click.get_current_context(), command)
    if vm_name == ".":
        sys.exit(_folder_shell(app, vm_opt, command, dry_run=dry_run, yes=yes,
                               yes_sudo=yes_sudo, allow_sensitive=allow_sensitive))
    session = open_vm(app, vm_name_of(vm_name, vm_opt))
    tgt = guest_target(session)
    cmd = guest_ssh.command(tgt, list(command), tty=not command and sys.stdin.isatty(),
                            batch=False, meaning=f"ssh to {tgt.vm}")
    sys.exit(run_foreground(cmd))


def _folder_shell(app: App, vm_opt: str | None, command: tuple[str, ...], *, dry_run: bool,
                  yes: bool, yes_sudo: bool, allow_sensitive: bool) -> int:
    from pathlib import Path

    from aivm.cli.progress import show_would_build
    from aivm.guest import workflow
    from aivm.run import run_foreground

    session = open_vm(app, vm_opt, Flags(yes, yes_sudo, dry_run, allow_sensitive),
                      implicit=True)
    place = workflow.enter(session, Path.cwd())
    if place.would_build:
        show_would_build(place.would_build)
    if place.target is None:  # a dry run: the plan was printed
        return 0
    tty = not command and sys.stdin.isatty()
    return run_foreground(workflow.shell_command(place, command, tty=tty))


@click.command("ssh_config")
@vm_argument
@click.pass_obj
def ssh_config(app: App, vm_name: str | None, vm_opt: str | None) -> None:
    """Print a Host block for ~/.ssh/config (OpenSSH and VS Code Remote-SSH)."""
    from aivm.guest import ssh as guest_ssh

    session = open_vm(app, vm_name_of(vm_name, vm_opt))
    click.echo(guest_ssh.ssh_config_block(guest_target(session)), nl=False)


@click.command("wait_ip")
@vm_argument
@click.option("--timeout", type=float, default=600.0, show_default=True)
@click.pass_obj
def wait_ip(app: App, vm_name: str | None, vm_opt: str | None, timeout: float) -> None:
    """Wait until the VM has a DHCP lease; print its IP."""
    import time

    from aivm.activate import up as activation
    from aivm.config.to_graph import mac_address

    session = open_vm(app, vm_name_of(vm_name, vm_opt))
    deadline = time.monotonic() + timeout
    ip = activation.wait_lease(session.conn(), session.vm.network,
                                mac_address(session.vm.name), deadline)
    click.echo(ip)
