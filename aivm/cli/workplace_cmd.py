"""`aivm attach`, `detach`, `code`, `vm sync_settings`: the agent's workplace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from aivm.cli.app import App
from aivm.cli.options import F, approval
from aivm.cli.session import Flags, Session, open_vm

MODES = click.Choice(["shared-root", "shared", "git"])
ACCESS = click.Choice(["rw", "ro"])


def folder_options(fn: F) -> F:
    """[PATH] (or --host_src), --vm; `.` is the current folder."""
    fn = click.option("--vm", "vm_opt", metavar="VM", help="The VM (default: the folder's, "
                      "the active or the only VM).")(fn)
    fn = click.option("--host_src", "--host-src", "host_src", metavar="PATH",
                      help="The host folder (same as PATH).")(fn)
    return click.argument("path", metavar="[PATH]", required=False)(fn)


def mode_options(fn: F) -> F:
    for opt in reversed((
        click.option("--mode", type=MODES, help="shared-root (default for a new folder), shared "
                     "or git; omitted: the saved mode."),
        click.option("--access", type=ACCESS, help="rw or ro (default: saved, else rw)."),
        click.option("--guest_dst", "--guest-dst", "guest_dst", metavar="PATH",
                     help="Where the folder appears in the guest."),
    )):
        fn = opt(fn)
    return fn


def allow_sensitive_option(fn: F) -> F:
    """--allow-sensitive: the one override of the sensitive-folder refusal (not --yes)."""
    return click.option(
        "--allow-sensitive", "--allow_sensitive", "allow_sensitive", is_flag=True,
        help="Attach a folder that exposes credentials, system or aivm directories "
             "(refused otherwise; --yes does not override this).")(fn)


def _folder(path: str | None, host_src: str | None) -> Path:
    from aivm.guest import attachments

    if path and host_src and attachments.folder_of(path) != attachments.folder_of(host_src):
        raise click.UsageError(f"two different folders named: {path} and --host_src {host_src}")
    return attachments.folder_of(host_src or path or ".")


def _enums(mode: str | None, access: str | None) -> dict[str, Any]:
    from aivm.config.schema import Access, AttachMode

    return {"mode": AttachMode(mode) if mode else None,
            "access": Access(access) if access else None}


def _open(app: App, vm_opt: str | None, folder: Path, flags: Flags) -> Session:
    import os

    cwd = Path.cwd()
    try:
        os.chdir(folder)   # the folder's own attachment chooses its VM
        return open_vm(app, vm_opt, flags, implicit=True)
    finally:
        os.chdir(cwd)


@click.command()
@folder_options
@mode_options
@allow_sensitive_option
@approval
@click.pass_obj
def attach(app: App, path: str | None, host_src: str | None, vm_opt: str | None,
           mode: str | None, access: str | None, guest_dst: str | None,
           allow_sensitive: bool, dry_run: bool, yes: bool, yes_sudo: bool) -> None:
    """Share a host folder with the VM (live when it runs); `.` is the current folder."""
    from aivm.guest import attach as attaching
    from aivm.guest import attachments, workflow

    folder = _folder(path, host_src)
    session = _open(app, vm_opt, folder, Flags(yes, yes_sudo, dry_run, allow_sensitive))
    att = workflow.choose(session, folder, guest_dst=guest_dst, **_enums(mode, access))
    place = attaching.Place(session.conn(), session.vm, session.running_target())
    record = app.config_path if attachments.changed(session.cfg, att) else None
    session.execute(attaching.attach_plan(place, att, record))
    if not dry_run:
        click.echo(f"attached {folder} to {session.vm.name} ({att.mode}, {att.access}) at "
                   f"{attachments.destination(att, session.vm)}")


def _detachable(path: str | None, host_src: str | None) -> tuple[Path, str]:
    """The folder, and the path as named (unresolved): a saved folder that is gone, or that
    a guest replaced with a link, can still be detached by the path it was saved under."""
    import os

    from aivm.errors import AivmError

    named = os.path.abspath(os.path.expanduser(host_src or path or "."))
    try:
        return _folder(path, host_src), named
    except AivmError:
        return Path(named), named


@click.command()
@folder_options
@approval
@click.pass_obj
def detach(app: App, path: str | None, host_src: str | None, vm_opt: str | None,
           dry_run: bool, yes: bool, yes_sudo: bool) -> None:
    """Unmount the folder in the guest and on the host, and forget the attachment."""
    from aivm.errors import AivmError
    from aivm.guest import attach as attaching
    from aivm.guest import attachments

    folder, named = _detachable(path, host_src)
    session = _open(app, vm_opt, folder if folder.is_dir() else Path.cwd(),
                    Flags(yes, yes_sudo, dry_run))
    att = attachments.saved(session.cfg, folder, session.vm.name) or next(
        (a for a in attachments.of_vm(session.cfg, session.vm.name) if a.host_path == named),
        None)
    if att is None:
        raise AivmError(f"{folder} is not attached to {session.vm.name}",
                        hint="`aivm config show` lists the attachments", reason="not-attached")
    place = attaching.Place(session.conn(), session.vm, session.running_target())
    session.execute(attaching.detach_plan(place, att, app.config_path))
    if not dry_run:
        click.echo(f"detached {folder} from {session.vm.name}")


@click.command()
@folder_options
@mode_options
@click.option("--sync_settings", "--sync-settings", "sync_settings", is_flag=True,
              help="Copy the [sync] dotfiles into the guest first.")
@allow_sensitive_option
@approval
@click.pass_obj
def code(app: App, path: str | None, host_src: str | None, vm_opt: str | None,
         mode: str | None, access: str | None, guest_dst: str | None, sync_settings: bool,
         allow_sensitive: bool, dry_run: bool, yes: bool, yes_sudo: bool) -> None:
    """Open VS Code in the VM on this folder (bringing the VM up and attaching it)."""
    import os

    from aivm.cli.progress import show_would_build
    from aivm.guest import code as vscode
    from aivm.guest import sshconf, workflow
    from aivm.run import run_foreground, which

    folder = _folder(path, host_src)
    session = _open(app, vm_opt, folder, Flags(yes, yes_sudo, dry_run, allow_sensitive))
    place = workflow.enter(session, folder, guest_dst=guest_dst, **_enums(mode, access))
    if place.would_build:
        show_would_build(place.would_build)
    if place.target is None:
        return  # dry run of a stopped VM: the plans above are all there is to show
    if sync_settings or session.cfg.sync.enabled:
        _sync(session, place.target, None, None)
    from aivm.activate import plan as plans

    session.execute(plans.of(sshconf.write_step(place.target), sshconf.include_step()))
    reason = vscode.why_not_launch(which("code"), os.environ)
    if reason or dry_run:
        click.echo(vscode.manual_steps(reason or "--dry-run", place.target.alias,
                                       session.vm.name, place.guest_path))
        return
    raise SystemExit(run_foreground(vscode.launch(place.target.alias, place.guest_path)))


def _sync(session: Session, target: Any, paths_text: str | None,
          overwrite: bool | None) -> None:
    from aivm.activate import plan as plans
    from aivm.guest import sync

    cfg = session.cfg.sync
    chosen = sync.parse_paths(paths_text) if paths_text else cfg.paths
    selection = sync.select(chosen, Path.home())
    for line in selection.skipped:
        session.ui.warn(f"warning: not synced: {line}")
    step = sync.sync_step(target, selection,
                          overwrite=cfg.overwrite if overwrite is None else overwrite)
    plan = plans.of(step if step else "settings sync: none of the listed files exist")
    session.execute(plan)


@click.command("sync_settings")
@click.argument("vm_name", metavar="[VM]", required=False)
@click.option("--vm", "vm_opt", metavar="VM", help="The VM (same as the argument).")
@click.option("--paths", "paths_text", metavar="P1,P2,...",
              help="Comma-separated paths instead of [sync].paths.")
@click.option("--overwrite/--no-overwrite", default=None,
              help="Replace files that exist in the guest (default: [sync].overwrite).")
@approval
@click.pass_obj
def sync_settings(app: App, vm_name: str | None, vm_opt: str | None, paths_text: str | None,
                  overwrite: bool | None, dry_run: bool, yes: bool, yes_sudo: bool) -> None:
    """Copy dotfiles ([sync].paths, or --paths) into the guest user's home."""
    from aivm.cli.session import vm_name as vm_name_of
    from aivm.cli.ssh_cmd import guest_target

    session = open_vm(app, vm_name_of(vm_name, vm_opt), Flags(yes, yes_sudo, dry_run))
    _sync(session, guest_target(session), paths_text, overwrite)


# Registered by aivm/cli/main.py: top-level commands, and `aivm vm NAME` aliases.
TOP: list[click.Command] = [attach, detach, code]
VM_ALIASES: dict[str, click.Command] = {"attach": attach, "detach": detach, "code": code,
                                        "sync_settings": sync_settings,
                                        "sync-settings": sync_settings}
