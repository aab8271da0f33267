"""`aivm host ...`: doctor, install_deps, image_fetch, net, fw; and `aivm vm update`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from aivm.cli.app import App
from aivm.cli.options import approval, vm_argument
from aivm.cli.session import vm_name as vm_name_of

if TYPE_CHECKING:
    from aivm.activate.firewall import Live, Probe
    from aivm.activate.live import Conn
    from aivm.activate.plan import Plan
    from aivm.config.schema import Config, Network
    from aivm.graph.graph import Graph
    from aivm.graph.scheduler import BuildReport, NodeState
    from aivm.session import Policy

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group("host", context_settings=CONTEXT)
def host() -> None:
    """Check and prepare this host: doctor, packages, base images, networks, firewalls."""


@host.command()
@click.option("--sudo", is_flag=True, help="Also run privileged probes (the firewall tables).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable (docs/json.md).")
@click.pass_context
def doctor(ctx: click.Context, sudo: bool, as_json: bool) -> None:
    """Check what aivm needs here; a fix for each problem. Exits 1 when a required check fails."""
    from aivm.host import doctor as checks

    app: App = ctx.obj
    report = checks.run(checks.Inputs(app.connect_uri, app.store().root, app.config_path, sudo))
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else checks.render(report))
    if not report.ok:
        ctx.exit(1)


@host.command("install_deps")
@approval
@click.pass_obj
def install_deps(app: App, dry_run: bool, yes: bool, yes_sudo: bool) -> None:
    """Install the Debian/Ubuntu packages aivm needs (one previewed root step)."""
    from aivm.host import deps

    plan = deps.install_plan(deps.missing())
    if plan.is_empty:
        click.echo("\n".join(plan.notes))
        return
    _execute(app, plan, yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)


@host.command("image_pin")
@click.argument("image")
@click.option("--url", required=True, help="The image URL (https://, file:// or a path).")
@click.option("--sums", "sums", metavar="FILE|URL",
              help="The SHA256SUMS file (default: SHA256SUMS beside the image URL).")
@click.pass_obj
def image_pin(app: App, image: str, url: str, sums: str | None) -> None:
    """Pin IMAGE to URL with the sha256 its SHA256SUMS file lists, in the config."""
    from aivm.config import write
    from aivm.recipes.fetch import pin_from_sha256sums, sums_text

    app.config(implicit=True)  # loads it, so the write can refuse a concurrent edit
    source = sums or url.rsplit("/", 1)[0] + "/SHA256SUMS"
    digest = pin_from_sha256sums(url, sums_text(source))
    write.pin_image(app.config_path, image, url=url, sha256=digest)
    from aivm.urls import redact

    click.echo(f"image {image}: pinned {redact(url)}\n  sha256 {digest} (from {redact(source)})")


@host.command("image_fetch")
@click.argument("image", required=False)
@click.pass_obj
def image_fetch(app: App, image: str | None) -> None:
    """Fetch (or build) IMAGE and verify it: only the base-image node (default: the VM's image)."""
    from aivm.config.to_graph import image_node
    from aivm.graph.graph import Graph

    cfg = app.config(implicit=True)
    chosen = cfg.require_image(image or _default_vm_field(cfg, "image"))
    node = image_node(cfg, chosen)
    report = _build(app, Graph([node]), (node.name,))
    state = report.states[node.name]
    pin = f"sha256 {node.fixed_output} verified" if node.fixed_output else f"key {state.key[:16]}"
    verb = f"built in {report.seconds[node.name]:.1f} s" if node.name in report.built \
        else "already in the store"
    click.echo(f"image {chosen.name}: {verb} ({pin})\n  {state.path}")


def _default_vm_field(cfg: Config, field: str) -> str:
    """`field` of the VM a bare command means (active, only), else of [defaults]."""
    from pathlib import Path

    from aivm.config.resolve import resolve_vm
    from aivm.errors import ConfigError

    try:
        return str(getattr(resolve_vm(cfg, None, Path.cwd()), field))
    except ConfigError:
        return str(getattr(cfg.defaults, field))


# ---- networks and firewalls ------------------------------------------------------------------

@host.group("net", context_settings=CONTEXT)
def net() -> None:
    """A declared libvirt network: create, status, destroy (default: the VM's network)."""


network_argument = click.argument("network", required=False)


@net.command("create")
@network_argument
@approval
@click.pass_obj
def net_create(app: App, network: str | None, dry_run: bool, yes: bool, yes_sudo: bool) -> None:
    """Build the network's node and define + start it (redefine it when outdated)."""
    from aivm.activate import egress
    from aivm.graph.graph import Graph
    from aivm.host import network as nets

    cfg, netw = _network(app, network)
    nodes = egress.nodes(netw)   # the network, and its egress policy (before dnsmasq starts)
    states = _build(app, Graph(nodes), [n.name for n in nodes]).states
    conn = _conn(app)
    _execute(app, egress.live_plan(conn, netw, states), yes=yes, yes_sudo=yes_sudo,
             dry_run=dry_run)
    if not dry_run:
        click.echo(nets.net_status(conn, states, netw).render())


@net.command("status")
@network_argument
@click.pass_obj
def net_status(app: App, network: str | None) -> None:
    """The network's live state against the store, and the VMs on it."""
    from aivm.host import network as nets

    cfg, netw = _network(app, network)
    states = _resolve(app, nets.graph(netw))
    click.echo(nets.net_status(_conn(app), states, netw).render())


@net.command("destroy")
@network_argument
@approval
@click.option("--force", is_flag=True, help="Even while VMs are defined on it.")
@click.pass_obj
def net_destroy(app: App, network: str | None, dry_run: bool, yes: bool, yes_sudo: bool,
                force: bool) -> None:
    """Stop and undefine the network; refused while VMs use it unless --force."""
    from aivm.host import network as nets

    _, netw = _network(app, network)
    plan = nets.destroy_plan(_conn(app), netw.name, force=force)
    _execute(app, plan, yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)


@host.group("fw", context_settings=CONTEXT)
def fw() -> None:
    """A network's nft firewall: apply, status, remove (default: the VM's network)."""


@fw.command("apply")
@network_argument
@approval
@click.pass_obj
def fw_apply(app: App, network: str | None, dry_run: bool, yes: bool, yes_sudo: bool) -> None:
    """Build the network's ruleset node and load it with one `nft -f` (as root)."""
    from aivm.activate import hostnet
    from aivm.activate import plan as plans
    from aivm.host import network as nets

    _, netw = _network(app, network)
    nets.require_firewall(netw)
    states = _build(app, nets.graph(netw), nets.node_names(netw))
    probe = nets.probe(states.states, netw)
    seen = _read_fw(app, probe, yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)
    bridge_note = hostnet.check_firewall(_conn(app), netw, dry_run=dry_run)
    _execute(app, plans.of(bridge_note, nets.apply_plan(states.states, netw, seen)), yes=yes,
             yes_sudo=yes_sudo, dry_run=dry_run)
    if not dry_run:
        after = _read_fw(app, probe, yes=yes, yes_sudo=yes_sudo, dry_run=False)
        click.echo(nets.fw_status(states.states, netw, after))


@fw.command("status")
@network_argument
@click.pass_obj
def fw_status(app: App, network: str | None) -> None:
    """Whether the network's nft table is applied and is the store's ruleset (runs nft as root)."""
    from aivm.host import network as nets

    _, netw = _network(app, network)
    states = _resolve(app, nets.graph(netw))
    seen = _read_fw(app, nets.probe(states, netw), yes=False, yes_sudo=False, dry_run=False)
    click.echo(nets.fw_status(states, netw, seen))


@fw.command("remove")
@network_argument
@approval
@click.pass_obj
def fw_remove(app: App, network: str | None, dry_run: bool, yes: bool, yes_sudo: bool) -> None:
    """Delete the network's nft table (guests then reach whatever NAT reaches)."""
    from aivm.host import network as nets

    _, netw = _network(app, network)
    seen = _read_fw(app, nets.probe({}, netw), yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)
    _execute(app, nets.remove_plan(netw, seen), yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)


# ---- aivm vm update --------------------------------------------------------------------------

@click.command("update")
@vm_argument
@approval
@click.option("--restart", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Restart a running VM: when a change needs it, whenever "
                                      "something changes, or never (a note says what waits).")
@click.option("--json", "as_json", is_flag=True, help="Report as JSON on stdout.")
@click.pass_obj
def update(app: App, vm_name: str | None, vm_opt: str | None, dry_run: bool, yes: bool,
           yes_sudo: bool, restart: str, as_json: bool) -> None:
    """Reconcile a defined VM with its config: cpus, memory, disk growth, network, firewall."""
    from aivm.activate import update as reconcile
    from aivm.cli.session import Flags, open_vm

    session = open_vm(app, vm_name_of(vm_name, vm_opt), Flags(yes, yes_sudo, dry_run))
    art = session.probed(session.artifacts(session.build(quiet=as_json)))
    result = reconcile.plan_update(session.conn(), app.store(), art,
                                   restart=reconcile.Restart(restart))
    outcome = session.execute(result.plan)
    if as_json:
        click.echo(json.dumps({
            "vm": session.vm.name, "dry_run": dry_run, "running": result.running,
            "restarts": result.restarts, "changes": [c.to_json() for c in result.changes],
            "steps": [s.title for s in result.plan.steps], "notes": list(result.plan.notes),
            "ran": [title for title, _ in outcome.ran]}, indent=2))
        return
    for change in result.changes:
        click.echo(change.line)
    if not result.changes:
        click.echo(f"VM {session.vm.name}: cpus, memory, disk and network match the config")


# ---- shared helpers --------------------------------------------------------------------------

def _network(app: App, name: str | None) -> tuple[Config, Network]:
    from aivm.host import network as nets

    cfg = app.config(implicit=True)
    return cfg, nets.chosen(cfg, name)


def _conn(app: App) -> Conn:
    from aivm.session import connect

    return connect(app)


def _resolve(app: App, graph: Graph) -> dict[str, NodeState]:
    from aivm.graph import scheduler

    return scheduler.resolve(graph, app.registry(), app.store(), app.statcache())


def _build(app: App, graph: Graph, targets: Iterable[str]) -> BuildReport:
    from aivm.cli import progress

    return progress.build(app, graph, targets)


def _policy(app: App, *, yes: bool, yes_sudo: bool, dry_run: bool) -> Policy:
    """The command's policy under the config's [behavior] (defaults without a config)."""
    from aivm.cli.session import Flags, policy

    return policy(app, Flags(yes, yes_sudo, dry_run))


def _execute(app: App, plan: Plan, *, yes: bool, yes_sudo: bool, dry_run: bool) -> None:
    """Preview, approve and run `plan`."""
    from aivm import session

    session.execute(plan, _policy(app, yes=yes, yes_sudo=yes_sudo, dry_run=dry_run),
                    session.Callbacks())


def _read_fw(app: App, probe: Probe, *, yes: bool, yes_sudo: bool, dry_run: bool) -> Live:
    """Phase one: the firewall's read-only root probe, shown and approved like a step."""
    from aivm import session

    return session.read_firewall(probe, _policy(app, yes=yes, yes_sudo=yes_sudo,
                                                dry_run=dry_run), session.Callbacks())


# Registered by aivm/cli/main.py: top-level commands, and `aivm vm NAME` aliases.
TOP: list[click.Command] = [host]
VM_ALIASES: dict[str, click.Command] = {"update": update}
