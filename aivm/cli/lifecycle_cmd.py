"""`aivm up`, `down`, `destroy`, `restart`: a VM's life on libvirt."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from aivm.cli.app import App
from aivm.cli.options import approval, vm_argument
from aivm.cli.session import Session
from aivm.cli.session import vm_name as vm_name_of
from aivm.cli.store_cmd import substituter_option


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
    started = time.monotonic()
    session = Session.open(app, vm_name_of(vm_name, vm_opt), implicit=True)
    session.warn_accel()
    from aivm.activate import up as activation

    activation.check_host(session.conn(), session.cfg, session.vm)  # before minutes of build
    if dry_run and _stale_for_dry_run(session, as_json):
        return
    report = session.build(quiet=as_json)
    built_at = time.monotonic()

    art = session.probed(session.artifacts(report), yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)
    plan = activation.plan_up(session.conn(), app.store(), art, recreate=recreate,
                              attachments=session.cfg.attachments,
                              booted=session.cfg.behavior.restore_snapshots,
                              notify=lambda line: click.echo(line, err=True))
    outcome = session.execute(plan, yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)
    result: dict[str, Any] = {"vm": session.vm.name, "built": report.built, "dry_run": dry_run,
              "substituted": report.substituted,
              "steps": [s.title for s in plan.steps], "notes": list(plan.notes),
              "ran": [title for title, _ in outcome.ran], "build_seconds": built_at - started}
    if not dry_run and not no_wait:
        fast = None if recreate else _still_ready(session, quiet=as_json)
        result.update(fast or _wait(session, art, timeout, recreate, quiet=as_json))
        from aivm.activate import snapshot

        if snapshot.save_title(session.vm.name) in result["ran"]:
            result.update(_save_booted(session, art, timeout, quiet=as_json))
            _restamp(session)    # the restored guest is the saved, ready one (new domain ID)
        started_here = [t for t in result["ran"] if t.startswith(f"Restore VM {session.vm.name}")
                        or t == snapshot.save_title(session.vm.name)]
        # this run's restore, by phase; empty when the VM booted (or fell back to a boot)
        result["restored"] = snapshot.last_restore(session.conn(), session.vm.name) \
            if started_here else {}
    result["seconds"] = time.monotonic() - started
    if as_json:
        click.echo(json.dumps(result, indent=2))


def _stale_for_dry_run(session: Session, as_json: bool) -> bool:
    """Print what `up` would build; True when something is stale (no plan can be shown yet)."""
    from aivm.graph import scheduler

    app = session.app
    states = scheduler.resolve(app.graph((session.vm.name,)), app.registry(), app.store(),
                               app.statcache())
    stale = {n: list(s.reasons) for n, s in states.items() if not s.cached}
    if not stale:
        return False
    if as_json:
        click.echo(json.dumps({"vm": session.vm.name, "dry_run": True, "would_build": stale,
                               "steps": [], "notes": [], "ran": []}, indent=2))
        return True
    click.echo(f"would build {len(stale)} node(s):")
    for name, reasons in stale.items():
        click.echo(f"  {name}: {'; '.join(reasons)}")
    click.echo(f"the activation plan depends on them: `aivm build {session.vm.name}`, "
               "then `aivm up --dry-run` shows it")
    return True


def _wait(session: Session, art, timeout: float, recreate: bool,  # type: ignore[no-untyped-def]
          *, quiet: bool) -> dict[str, object]:
    from aivm.activate import up as activation
    from aivm.cli.waiting import PhaseDisplay
    from aivm.config.to_graph import mac_address
    from aivm.guest import ssh

    if recreate:
        ssh.forget_host_keys(session.vm.name)
    with PhaseDisplay(session.vm.name, enabled=not quiet) as display:
        tgt = activation.wait_ready(session.conn(), session.vm, mac_address(session.vm.name),
                                    timeout=timeout, on_phase=display.phase)
    _after_ready(session, tgt)
    if not quiet:
        click.echo(f"VM {session.vm.name} is ready at {tgt.host}: `aivm ssh {session.vm.name}`")
    return {"ip": tgt.host, "ready_seconds": display.elapsed}


def _still_ready(session: Session, *, quiet: bool) -> dict[str, object] | None:
    """The fast path: the domain still runs the run that was recorded ready (same UUID and
    ID, so no step restarted, restored or re-created it: aivm/guest/ready.py), so one ssh
    probe replaces the wait; None means wait. Steps that leave the guest running (gc roots,
    host binds) do not matter; one that cut its network makes the probe fail."""
    from aivm.activate import up as activation
    from aivm.errors import AivmError
    from aivm.guest import ready, ssh

    started, conn, name = time.monotonic(), session.conn(), session.vm.name
    if not ready.still_ready(conn, name):
        return None
    try:
        tgt = activation.running_target(conn, session.vm)
    except AivmError:
        return None
    if tgt is None or not ssh.check(tgt, timeout=10):
        return None
    _after_ready(session, tgt)
    if not quiet:
        click.echo(f"VM {name} is ready at {tgt.host} (nothing to do; ready since it "
                   f"started): `aivm ssh {name}`")
    return {"ip": tgt.host, "ready_seconds": time.monotonic() - started, "already_ready": True}


def _restamp(session: Session) -> None:
    from aivm.guest import ready

    ready.record(session.conn(), session.vm.name)


def _after_ready(session: Session, tgt) -> None:  # type: ignore[no-untyped-def]
    """Record the ready run, the VM's ssh alias in aivm's ssh config, and start its
    published ports (aivm/guest/ports.py)."""
    from aivm.guest import ports, ready, sshconf

    ready.record(session.conn(), session.vm.name)
    sshconf.record(tgt)
    for line in ports.ensure(session.vm, tgt):
        click.echo(line, err=True)


def _save_booted(session: Session, art, timeout: float,  # type: ignore[no-untyped-def]
                 *, quiet: bool) -> dict[str, object]:
    """Save the freshly ready VM's booted state and restore it at once (snapshot.py)."""
    from aivm.activate import snapshot
    from aivm.activate import up as activation
    from aivm.config.to_graph import mac_address

    conn, vm, store = session.conn(), session.vm, session.app.store()
    mac = mac_address(vm.name)
    ip = activation.running_target(conn, vm)
    ctx = snapshot.Context(conn, store, vm, art.overlay, art.domain_xml.read_text(),
                           session.cfg.attachments, lambda line: click.echo(line, err=True))
    choice = snapshot.choose(conn, store, vm, ctx.domain_xml, enabled=True)
    if choice.path != "boot-and-save":
        return {"booted_state": None, "booted_state_error": choice.line}
    try:
        saved = snapshot.save_and_restore(ctx, choice.key, ip.host if ip else "", mac,
                                          art.entry(f"{vm.name}.domain"))
    except snapshot.RestoreFailed as exc:
        click.echo(f"VM {vm.name}: booted state not saved ({exc})", err=True)
        if live_active(conn, vm.name):
            return {"booted_state": None, "booted_state_error": str(exc)}
        snapshot.boot_fresh(ctx)
        tgt = activation.wait_ready(conn, vm, mac, timeout=timeout, on_phase=lambda _p, _s: None)
        return {"booted_state": None, "booted_state_error": str(exc), "ip": tgt.host}
    from aivm.guest import ready

    ready.record(conn, vm.name)  # the restored run is the ready one now
    if not quiet:
        click.echo(f"VM {vm.name}: booted state saved ({saved.size / 2**20:.0f} MiB of memory, "
                   f"{saved.save_s:.1f} s) and restored ({saved.restore_s:.1f} s): "
                   "`aivm up --recreate` restores it", err=True)
    return {"booted_state": str(saved.entry), "save_seconds": saved.save_s,
            "restore_seconds": saved.restore_s}


def live_active(conn, name: str) -> bool:  # type: ignore[no-untyped-def]
    from aivm.activate import live

    return live.read_domain(conn, name).active


@click.command()
@vm_argument
@approval
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="Seconds of ACPI shutdown before the VM is powered off.")
@click.pass_obj
def down(app: App, vm_name: str | None, vm_opt: str | None, dry_run: bool, yes: bool,
         yes_sudo: bool, timeout: float) -> None:
    """Shut the VM down (ACPI, then power off after --timeout)."""
    from aivm.activate import live
    from aivm.activate import plan as plans
    from aivm.guest import ports

    session = Session.open(app, vm_name_of(vm_name, vm_opt))
    name = session.vm.name
    plan = plans.of(ports.stop_step(name, "the VM stops; `aivm up` starts them again"),
                    live.stop_plan(session.conn(), name, timeout))
    session.execute(plan, yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)


@click.command()
@vm_argument
@approval
@click.pass_obj
def destroy(app: App, vm_name: str | None, vm_opt: str | None, dry_run: bool, yes: bool,
            yes_sudo: bool) -> None:
    """Stop and undefine the VM, remove its disk and gc roots (the store is kept)."""
    from aivm.activate import teardown
    from aivm.guest import ssh

    session = Session.open(app, vm_name_of(vm_name, vm_opt))
    probe = teardown.firewall_probe(session.conn(), session.cfg, session.vm)
    seen = None if probe is None else \
        session.read_firewall(probe, yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)
    plan = teardown.destroy_plan(session.conn(), app.store(), session.cfg, session.vm,
                                 seen)
    session.execute(plan, yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)
    if not dry_run:
        from aivm.guest import ready

        ssh.forget_host_keys(session.vm.name)
        ready.forget(session.vm.name)


@click.command()
@vm_argument
@approval
@click.pass_obj
def restart(app: App, vm_name: str | None, vm_opt: str | None, dry_run: bool, yes: bool,
            yes_sudo: bool) -> None:
    """Shut the VM down and start it again."""
    from aivm.activate import live
    from aivm.activate import plan as plans
    from aivm.activate.plan import Step

    session = Session.open(app, vm_name_of(vm_name, vm_opt))
    conn, name = session.conn(), session.vm.name
    plan = plans.of(Step(f"Restart VM {name}", "asked to restart it",
                         (live.shutdown_domain(conn, name), live.start_domain(conn, name))))
    session.execute(plan, yes=yes, yes_sudo=yes_sudo, dry_run=dry_run)
