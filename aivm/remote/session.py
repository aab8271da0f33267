"""The `up` sequence of a VM on another host (called by aivm/session.py's Session.up).

Build here, copy the closure there, run the plan of aivm/remote/up.py (previewed and
approved like a local one), then wait for ssh through the host (ProxyCommand) and record
the VM's ssh_config block with it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aivm.remote.placement import host_of

if TYPE_CHECKING:
    from aivm.activate.live import Conn
    from aivm.session import Env, Session, Up, UpOptions


def connect(env: Env, vm: Any) -> Conn:
    """The libvirt connection of `vm`'s host (qemu+ssh), opened once per process."""
    from aivm.activate import live
    from aivm.remote.placement import libvirt_uri

    uri = libvirt_uri(vm, env.connect_uri)
    key = f"conn:{uri}"
    if key not in env._cache:
        env._cache[key] = live.connect(uri)
    conn: Conn = env._cache[key]
    return conn


def up(session: Session, opts: UpOptions, started: float) -> Up:
    from aivm.activate.up import wait_ready
    from aivm.config.to_graph import mac_address
    from aivm.guest import ssh, sshconf
    from aivm.remote.up import Host, plan_remote_up
    from aivm.session import Up

    remote = host_of(session.vm, session.env.connect_uri)
    assert remote is not None
    host = Host.of(remote)
    report = session.build(quiet=not opts.show_build)
    art = session.artifacts(report)
    plan = plan_remote_up(session.conn(), session.env.store(), art, host,
                          recreate=opts.recreate)
    outcome = session.execute(plan)
    result: dict[str, Any] = {
        "vm": session.vm.name, "host": remote.label, "built": report.built,
        "dry_run": session.dry_run, "substituted": report.substituted,
        "steps": [s.title for s in plan.steps], "notes": list(plan.notes),
        "ran": [title for title, _ in outcome.ran], "facts": host.facts.to_json()}
    target = None
    if not session.dry_run and opts.wait:
        if opts.recreate:
            ssh.forget_host_keys(session.vm.name)
        with session.ui.waiting(session.vm.name, opts.show_wait) as display:
            target = wait_ready(session.conn(), session.vm, mac_address(session.vm.name),
                                timeout=opts.timeout, on_phase=display.phase)
        sshconf.record(target)
        result.update({"ip": target.host, "ready_seconds": display.elapsed})
        if opts.show_wait:
            session.ui.say(f"VM {session.vm.name} is ready at {target.host} on "
                           f"{remote.label}: `aivm ssh {session.vm.name}`")
    result["seconds"] = time.monotonic() - started
    return Up(result, target)


def destroy_plan(session: Session) -> Any:
    from aivm.remote.up import Host
    from aivm.remote.up import destroy_plan as plan

    remote = host_of(session.vm, session.env.connect_uri)
    assert remote is not None
    same_host = [v.name for v in session.cfg.vms
                 if v.network == session.vm.network and v.host == session.vm.host]
    return plan(session.conn(), same_host, session.vm.name, session.vm.network,
                Host.of(remote))
