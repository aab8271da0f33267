"""`aivm net ...`: the guests' egress policy: allow, deny, and what was denied."""

from __future__ import annotations

import json

import click

from aivm.cli.app import App
from aivm.cli.options import approval

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group("net", context_settings=CONTEXT)
def net() -> None:
    """The egress policy of a network: allow, deny, denied (default: the VM's network)."""


network_option = click.option("--network", metavar="NETWORK",
                              help="The network (default: the active VM's).")


def _edit_command(name: str, doc: str) -> click.Command:
    """`aivm net allow` / `aivm net deny`: aivm.activate.egress.<name> on the network."""
    @click.argument("target", metavar="DOMAIN|CIDR")
    @network_option
    @approval
    @click.pass_obj
    def command(app: App, target: str, network: str | None, dry_run: bool, yes: bool,
                yes_sudo: bool) -> None:
        from aivm.activate import egress

        edit = getattr(egress, name)
        _change(app, network, lambda n: edit(n, target), dry_run, yes, yes_sudo)

    command.__doc__ = doc
    return net.command(name)(command)


allow = _edit_command(
    "allow", "Allow DOMAIN (and its subdomains), or an address/CIDR, then apply it live.")
deny = _edit_command(
    "deny", "Remove DOMAIN (or an allowed CIDR) from the allowlist, then apply it live.")


@net.command("denied")
@click.argument("network", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
@click.pass_obj
def denied(app: App, network: str | None, as_json: bool) -> None:
    """Recently denied destinations and refused names, each with the command that allows it."""
    from aivm.activate import approve, egress
    from aivm.host import network as nets

    cfg = app.config(implicit=True)
    netw = nets.chosen(cfg, network)
    entries: tuple[egress.Denied, ...] = ()
    if netw.egress.policy != "open":
        from aivm.session import Flags, Policy

        policy = Policy.of(cfg.behavior, Flags(yes=app.yes))
        results = approve.probe(egress.denied_step(netw.name), policy.approval)
        entries = egress.denied(netw.name, results or {})
    if as_json:
        click.echo(json.dumps({"network": netw.name, "policy": str(netw.egress.policy),
                               "denied": [e.to_json() for e in entries]}, indent=2))
        return
    if netw.egress.policy == "open":
        click.echo(f"network {netw.name}: egress policy open, nothing is denied")
        return
    click.echo(f"network {netw.name}: egress policy {netw.egress.policy}, "
               f"{len(entries)} denied destination(s)")
    for entry in entries:
        click.echo(f"  {entry.line}")


def _change(app: App, network: str | None, edit_fn, dry_run: bool, yes: bool,  # type: ignore[no-untyped-def]
            yes_sudo: bool) -> None:
    """Edit the config (comments kept), rebuild the egress node, apply it live."""
    from aivm.activate import egress
    from aivm.cli.host_cmd import _build, _conn, _execute
    from aivm.config import write
    from aivm.graph.graph import Graph
    from aivm.host import network as nets

    cfg = app.config(implicit=True)
    edit = edit_fn(nets.chosen(cfg, network))
    click.echo(edit.note + (" (dry run: the config is not written)" if dry_run and edit.changed
                            else ""))
    netw = edit.network
    if edit.changed and not dry_run:
        written = write.upsert_network(app.config_path, netw).network(netw.name)
        assert written is not None
        netw = written
    nodes = egress.nodes(netw)
    states = _build(app, Graph(nodes), [n.name for n in nodes]).states
    _execute(app, egress.live_plan(_conn(app), netw, states), yes=yes, yes_sudo=yes_sudo,
             dry_run=dry_run)


# Registered by aivm/cli/main.py.
TOP: list[click.Command] = [net]
VM_ALIASES: dict[str, click.Command] = {}
