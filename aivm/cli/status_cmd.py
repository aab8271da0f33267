"""`aivm status` and `aivm list`."""

from __future__ import annotations

import json

import click

from aivm.cli.app import App
from aivm.cli.options import vm_argument
from aivm.cli.session import Flags, open_vm
from aivm.cli.session import vm_name as vm_name_of


@click.command()
@vm_argument
@click.option("--sudo", is_flag=True, help="Also run privileged probes (the firewall).")
@click.option("--detail", is_flag=True, help="More detail (console log path).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
@click.pass_obj
def status(app: App, vm_name: str | None, vm_opt: str | None, sudo: bool, detail: bool,
           as_json: bool) -> None:
    """Declared against live state: graph, network, firewall, domain, disk, IP, ssh."""
    from aivm.activate import status as vmstatus
    from aivm.graph import scheduler

    session = open_vm(app, vm_name_of(vm_name, vm_opt), Flags(yes_sudo=sudo))
    states = scheduler.resolve(app.graph((session.vm.name,)), app.registry(), app.store(),
                               app.statcache())
    network = session.cfg.network(session.vm.network)
    assert network is not None
    nft = None
    if sudo:  # --sudo approves the read-only root probe; it is still shown before it runs
        from aivm.activate import firewall

        nft = session.read_firewall(firewall.network_probe(network.name, states))
    result = vmstatus.vm_status(session.conn(), session.vm, network, states, nft=nft,
                                probe_ssh=True)
    if detail or as_json:
        import dataclasses

        result = dataclasses.replace(result, start=vmstatus.start_path(
            session.conn(), app.store(), session.vm, states,
            enabled=session.policy.restore))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(vmstatus.render(result, detail=detail))


SECTIONS = ("vms", "networks", "folders")


@click.command("list")
@click.option("--section", type=click.Choice(SECTIONS), multiple=True,
              help="Only these sections (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
@click.pass_obj
def list_(app: App, section: tuple[str, ...], as_json: bool) -> None:
    """The declared VMs, networks and attached folders, with their live state."""
    from aivm.activate import inventory

    cfg = app.config()
    conn = _conn_or_none(app)
    data = inventory.collect(cfg, conn, section or SECTIONS, app.connect_uri)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(inventory.render(data))


def _conn_or_none(app: App):  # type: ignore[no-untyped-def]
    from aivm.activate import live
    from aivm.errors import AivmError

    try:
        return live.connect(app.connect_uri)
    except AivmError as exc:
        click.secho(f"warning: {exc.message} (live state not shown)", fg="yellow", err=True)
        return None
