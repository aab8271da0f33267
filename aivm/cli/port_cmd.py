"""`aivm port [VM] [PORT...]`: publish a guest port on the host at run time, or list them."""

from __future__ import annotations

import json

import click

from aivm.cli.app import App
from aivm.cli.session import Session, open_vm


@click.command()
@click.argument("words", nargs=-1, metavar="[VM] [PORT...]")
@click.option("--address", metavar="IP",
              help="Host address to bind (default 127.0.0.1; another one is reachable from "
                   "other machines: a warning says so).")
@click.option("--remove", "remove", type=int, multiple=True, metavar="HOST_PORT",
              help="Stop publishing this host port (added with `aivm port`; repeatable).")
@click.option("--json", "as_json", is_flag=True, help="The VM's ports as JSON.")
@click.pass_obj
def port(app: App, words: tuple[str, ...], address: str | None, remove: tuple[int, ...],
         as_json: bool) -> None:
    """Publish guest TCP ports on the host, or list them (no PORT).

    PORT is `GUEST` (the same number on the host), `HOST:GUEST` or
    `ADDRESS:HOST:GUEST`, as in docker's `-p`. The port is bound to the host's
    loopback unless --address (or ADDRESS) says otherwise. Ports from
    `[[vms.ports]]` and those added here are carried by one supervised ssh
    forwarder per VM; `aivm up` restarts it, `aivm down` stops it, and
    `aivm destroy` forgets the run-time ones.
    """
    from aivm.guest import ports

    vm_name, specs = _split(app, words)
    session = open_vm(app, vm_name)
    vm = session.vm
    for host in remove:
        ports.remove(vm, host)
    for spec in specs:
        ports.add(vm, ports.parse(spec, address))
    if specs or remove:
        _apply(session)
    rows = ports.status(vm)
    if as_json:
        click.echo(json.dumps({"vm": vm.name, "ports": rows}, indent=2))
        return
    if not rows:
        click.echo(f"VM {vm.name} publishes no ports: `aivm port {vm.name} 8000` adds one")
    for row in rows:
        click.echo(f"{row['address']}:{row['host']} -> {vm.name}:{row['guest']} "
                   f"({row['state']}, {row['source']})")


def _split(app: App, words: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """The first word is the VM when it names one; else every word is a port (active VM)."""
    if not words:
        return None, ()
    cfg = app.config()
    if cfg.vm(words[0]) is not None:
        return words[0], words[1:]
    return None, words


def _apply(session: Session) -> None:
    from aivm.guest import ports

    vm = session.vm
    target = session.running_target()
    if target is None:
        click.echo(f"VM {vm.name} is not running: its ports are published when it starts "
                   f"(aivm up {vm.name})", err=True)
        return
    for line in ports.ensure(vm, target):
        click.echo(line, err=True)


TOP = (port,)
VM_ALIASES = {"port": port}
