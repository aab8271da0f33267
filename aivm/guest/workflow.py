"""The folder workflow behind `aivm ssh .` and `aivm code .`.

From a folder: resolve its VM (creating the config on first use), bring the
VM up when it is not running, attach the folder (mode rules apply), restore
the VM's other saved attachments (best effort: warnings, not failures), and
hand back where the folder is in the guest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aivm.config.schema import Access, Attachment, AttachMode
from aivm.errors import AivmError
from aivm.guest import attach, attachments, sensitive, ssh, vetting

if TYPE_CHECKING:
    from aivm.run import Cmd
    from aivm.session import Session


@dataclass(frozen=True)
class Workplace:
    target: ssh.Target | None       # None only for a dry run of a stopped VM
    guest_path: str
    would_build: dict[str, list[str]] = field(default_factory=dict)  # a dry run's stale nodes


@dataclass(frozen=True)
class Started:
    """`bring_up`'s answer: the target (None: dry run), and a dry run's stale nodes."""

    target: ssh.Target | None
    would_build: dict[str, list[str]] = field(default_factory=dict)


def bring_up(session: Session, timeout: float = 900.0) -> Started:
    """The VM's ssh target; a VM that is not running is brought up as `aivm up` does
    (restored from its booted state when there is one: aivm/session.py)."""
    target = session.running_target()
    if target is not None:
        return Started(target)
    from aivm.session import UpOptions

    started = time.monotonic()
    done = session.up(UpOptions(timeout=timeout, show_wait=False))
    if done.target is not None:
        session.ui.note(f"VM {session.vm.name} is up ({time.monotonic() - started:.0f} s)")
    return Started(done.target, done.would_build)


def protected(session: Session) -> sensitive.Context:
    """What the sensitive check protects for this session (its config and store too)."""
    return sensitive.context(config=session.env.config_path, store=session.env.store().root)


def choose(session: Session, folder: Path, *, mode: AttachMode | None = None,
           access: Access | None = None, guest_dst: str | None = None) -> Attachment:
    """The attachment for `folder` (mode rules), vetted: its identity recorded, not nested
    in another, not sensitive unless the policy allows (the warning is raised loudly)."""
    att = attachments.decide(session.cfg, session.vm, folder, mode=mode, access=access,
                             guest_dst=guest_dst,
                             allow_sensitive=session.policy.allow_sensitive)
    att, warning = vetting.vet_new(att, session.cfg.attachments, protected(session))
    if warning:
        session.ui.alarm(warning)
    return att


def enter(session: Session, folder: Path, *, mode: AttachMode | None = None,
          access: Access | None = None, guest_dst: str | None = None) -> Workplace:
    """Up, attach `folder`, restore the others; where the folder is in the guest."""
    folder = attachments.folder_of(folder)
    att = choose(session, folder, mode=mode, access=access, guest_dst=guest_dst)
    started = bring_up(session)
    guest_path = attachments.destination(att, session.vm)
    if started.would_build:   # a dry run with stale nodes: no plan can be shown yet
        return Workplace(None, guest_path, started.would_build)
    place = attach.Place(session.conn(), session.vm, started.target)
    record = session.env.config_path if attachments.changed(session.cfg, att) else None
    session.execute(attach.attach_plan(place, att, record))
    restore_others(session, place, folder)
    return Workplace(started.target, guest_path)


def restore_others(session: Session, place: attach.Place, folder: Path) -> list[str]:
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
            session.execute(attach.attach_plan(place, other, None))
        except AivmError as exc:
            warnings.append(f"warning: could not restore {other.host_path}: {exc.message}")
            session.ui.warn(warnings[-1])
    return warnings


def shell_command(workplace: Workplace, command: tuple[str, ...] = (), *, tty: bool) -> Cmd:
    """ssh into the folder: a login shell started in the guest path, or `command` run there."""
    import shlex

    assert workplace.target is not None, "no ssh target: the VM was not started (dry run)"
    rest = " ".join(command) if command else 'exec "$SHELL" -l'
    remote = f"cd {shlex.quote(workplace.guest_path)} && {rest}"
    return ssh.command(workplace.target, [remote], tty=tty, batch=False,
                       meaning=f"ssh to {workplace.target.vm} in {workplace.guest_path}")
