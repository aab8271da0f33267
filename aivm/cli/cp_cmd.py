"""`aivm cp SRC... DEST`: copy into or out of a VM (`VM:path` on one side)."""

from __future__ import annotations

import sys

import click

from aivm.cli.app import App
from aivm.cli.session import open_vm


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="SRC... DEST")
@click.pass_obj
def cp(app: App, paths: tuple[str, ...]) -> None:
    """Copy files and folders between the host and a VM; the VM side is `VM:path`.

    Recursive, modes and times kept, progress on a terminal; rsync when the
    host and the guest have it, else scp. Both go through the VM's ssh alias
    in aivm's ssh config. Exits with the copy tool's exit code.
    """
    from aivm.cli.ssh_cmd import guest_target
    from aivm.guest import copy, sshconf
    from aivm.run import run_foreground, which

    cfg = app.config()
    t = copy.transfer(paths, frozenset(v.name for v in cfg.vms))
    session = open_vm(app, t.vm)
    target = guest_target(session)
    sshconf.record(target)
    cmd = copy.command(t, target, copy.guest_tools(target), host_rsync=bool(which("rsync")),
                       progress=sys.stderr.isatty())
    sys.exit(run_foreground(cmd))


TOP = (cp,)
VM_ALIASES = {"cp": cp}
