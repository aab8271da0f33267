"""The folder workflow behind `aivm ssh .` and `aivm code .`.

From a folder: resolve its VM (creating the config on first use), bring the
VM up when it is not running, attach the folder (mode rules apply), restore
the VM's other saved attachments (best effort: warnings, not failures), and
hand back where the folder is in the guest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aivm.config.schema import Access, Attachment, AttachMode
from aivm.errors import AivmError
from aivm.guest import attach, attachments, sensitive, ssh, vetting

if TYPE_CHECKING:
    from aivm.cli.session import Session


@dataclass(frozen=True)
class Approval:
    yes: bool = False
    yes_sudo: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class Workplace:
    target: ssh.Target | None       # None only for a dry run of a stopped VM
    guest_path: str


def running_target(session: Session) -> ssh.Target | None:
    """The ssh target of the session's VM when it runs, else None."""
    from aivm.activate.up import running_target as live_target

    return live_target(session.conn(), session.vm)


def bring_up(session: Session, approval: Approval,
             timeout: float = 900.0) -> ssh.Target | None:
    """`aivm up` for the session's VM when it is not running; its ssh target (None: dry run)."""
    target = running_target(session)
    if target is not None:
        return target
    from aivm.activate import up as activation
    from aivm.config.to_graph import mac_address

    session.warn_accel()
    art = session.probed(session.artifacts(session.build()), yes=approval.yes,
                         yes_sudo=approval.yes_sudo, dry_run=approval.dry_run)
    plan = activation.plan_up(session.conn(), session.app.store(), art,
                              attachments=session.cfg.attachments)
    _execute(session, plan, approval)
    if approval.dry_run:
        return None
    started = time.monotonic()
    tgt = activation.wait_ready(session.conn(), session.vm, mac_address(session.vm.name),
                                timeout=timeout, on_phase=lambda _p, _s: None)
    click.echo(f"VM {session.vm.name} is up ({time.monotonic() - started:.0f} s)", err=True)
    return tgt


def _execute(session: Session, plan, approval: Approval):  # type: ignore[no-untyped-def]
    return session.execute(plan, yes=approval.yes, yes_sudo=approval.yes_sudo,
                            dry_run=approval.dry_run)


def protected(session: Session) -> sensitive.Context:
    """What the sensitive check protects for this session (its config and store too)."""
    return sensitive.context(config=session.app.config_path, store=session.app.store().root)


def choose(session: Session, folder: Path, *, mode: AttachMode | None = None,
           access: Access | None = None, guest_dst: str | None = None,
           allow_sensitive: bool = False) -> Attachment:
    """The attachment for `folder` (mode rules), vetted: its identity recorded, not nested
    in another, not sensitive unless allowed (the warning is printed)."""
    att = attachments.decide(session.cfg, session.vm, folder, mode=mode, access=access,
                             guest_dst=guest_dst, allow_sensitive=allow_sensitive)
    att, warning = vetting.vet_new(att, session.cfg.attachments, protected(session))
    if warning:
        click.secho(warning, fg="red", bold=True, err=True)
    return att


def enter(session: Session, folder: Path, *, mode: AttachMode | None = None,
          access: Access | None = None, guest_dst: str | None = None,
          approval: Approval = Approval(), allow_sensitive: bool = False) -> Workplace:
    """Up, attach `folder`, restore the others; where the folder is in the guest."""
    folder = attachments.folder_of(folder)
    att = choose(session, folder, mode=mode, access=access, guest_dst=guest_dst,
                 allow_sensitive=allow_sensitive)
    target = bring_up(session, approval)
    place = attach.Place(session.conn(), session.vm, target)
    record = session.app.config_path if attachments.changed(session.cfg, att) else None
    _execute(session, attach.attach_plan(place, att, record), approval)
    restore_others(session, place, folder, approval)
    return Workplace(target, attachments.destination(att, session.vm))


def restore_others(session: Session, place: attach.Place, folder: Path,
                   approval: Approval) -> list[str]:
    """Re-attach the VM's other saved folders, each vetted again (vetting.vet_saved);
    failures and refusals become warnings (returned too)."""
    warnings = []
    ctx = protected(session)
    for other in attachments.of_vm(session.cfg, session.vm.name):
        if other.host_path == str(folder):
            continue
        try:
            if other.mode is not AttachMode.GIT:
                other = vetting.vet_saved(other, session.cfg.attachments, ctx)
            _execute(session, attach.attach_plan(place, other, None), approval)
        except AivmError as exc:
            warnings.append(f"warning: could not restore {other.host_path}: {exc.message}")
            click.secho(warnings[-1], fg="yellow", err=True)
    return warnings


def shell_command(workplace: Workplace, command: tuple[str, ...] = (), *, tty: bool):  # type: ignore[no-untyped-def]
    """ssh into the folder: a login shell started in the guest path, or `command` run there."""
    import shlex

    assert workplace.target is not None, "no ssh target: the VM was not started (dry run)"
    rest = " ".join(command) if command else 'exec "$SHELL" -l'
    remote = f"cd {shlex.quote(workplace.guest_path)} && {rest}"
    return ssh.command(workplace.target, [remote], tty=tty, batch=False,
                       meaning=f"ssh to {workplace.target.vm} in {workplace.guest_path}")
