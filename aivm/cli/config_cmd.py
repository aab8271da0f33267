"""`aivm config`: init, show, edit, lint, discover. Parse options, call aivm.config, print."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aivm.errors import Aborted, AivmError, ConfigError

if TYPE_CHECKING:
    from aivm.config.discover import Domain
    from aivm.config.schema import Config

DEFAULT_URI = "qemu:///system"


def _path(ctx: click.Context) -> Path:
    if ctx.obj is None:
        from aivm import paths

        return paths.config_path()
    path: Path = ctx.obj.config_path
    return path


def _yes(ctx: click.Context, flag: bool) -> bool:
    return flag or bool(getattr(ctx.obj, "yes", False))


def _uri(ctx: click.Context, given: str | None) -> str:
    obj = ctx.obj
    return (given or getattr(obj, "connect_uri", "") or getattr(obj, "connect", "")
            or DEFAULT_URI)


@click.group("config")
def config() -> None:
    """Create, show, edit and check the config file (the declared state)."""


@config.command("init")
@click.option("--defaults", is_flag=True, help="Take the detected defaults without asking.")
@click.option("--force", is_flag=True, help="Replace an existing config (kept as .bak).")
@click.option("-y", "--yes", is_flag=True, help="Answer yes to every question.")
@click.pass_context
def init_cmd(ctx: click.Context, defaults: bool, force: bool, yes: bool) -> None:
    """Detect sensible defaults for this host and write the config."""
    from aivm.config import init

    path = _path(ctx)
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", reason="config-exists",
                          hint="edit it with `aivm config edit`, or replace it with "
                               "`aivm config init --force`")
    plan = init.detect(init.host_facts())
    click.echo(init.summary(plan) + "\n")
    click.echo(init.render(plan))
    ask = not (defaults or _yes(ctx, yes))
    if plan.create_key and ask and not click.confirm(
            f"No ssh key found; create {plan.vm.ssh_privkey} with ssh-keygen?", default=True):
        plan = dataclasses.replace(plan, create_key=False)
        click.echo(f"warning: {plan.vm.ssh_pubkey} does not exist; set ssh_pubkey before "
                   "`aivm up`", err=True)
    if ask and not click.confirm(f"Write {path}?", default=True):
        raise Aborted("nothing was written", reason="declined")
    init.apply(plan, path, force=force)
    click.echo(f"wrote {path}")


@config.command("show")
@click.argument("vm", required=False)
@click.option("--resolved", is_flag=True, help="Merge defaults, fill uid/gid, add what VMs use.")
@click.pass_context
def show_cmd(ctx: click.Context, vm: str | None, resolved: bool) -> None:
    """Print the config file, one VM's effective settings, or everything resolved."""
    from aivm.config import load, show, stamp

    path = _path(ctx)
    if vm is None and not resolved:
        found = stamp.read(path)
        if found is None:
            raise load.missing(path)
        click.echo(found[0].decode(errors="replace"), nl=False)
        return
    cfg = load.load(path)
    if vm is None:
        click.echo(show.resolved(cfg), nl=False)
        return
    chosen = load.resolve_vm(cfg, vm)            # raises unknown-vm, listing the choices
    if not resolved:
        chosen = cfg.vm(vm) or chosen             # as declared: no host uid/gid filled in
    click.echo(show.vm(cfg, chosen, full=resolved), nl=False)


@config.command("edit")
@click.pass_context
def edit_cmd(ctx: click.Context) -> None:
    """Open the config in $VISUAL/$EDITOR; an invalid edit is refused and the file restored."""
    from aivm.config import edit

    path = _path(ctx)
    _refuse_without_terminal(path)
    result = edit.edit_file(path, edit.editor_argv())
    if result.created:
        click.echo(f"created {path} with defaults")
    click.echo(f"{path}: {'saved' if result.changed else 'no changes'}")


def _refuse_without_terminal(path: Path) -> None:
    """The default editor (vi) waits forever for keys that never come without a terminal."""
    import os
    import sys

    if sys.stdin.isatty() or os.environ.get("VISUAL") or os.environ.get("EDITOR"):
        return
    raise AivmError("`aivm config edit` needs a terminal: standard input is not one, "
                    "so an editor would wait forever",
                    hint=f"run it in a terminal, set $EDITOR to a command that needs no "
                         f"terminal, or edit {path} directly and check it with "
                         "`aivm config lint`",
                    reason="no-terminal")


@config.command("lint")
@click.pass_context
def lint_cmd(ctx: click.Context) -> None:
    """Report every problem with file:line and a hint; exit 1 if there are any."""
    from aivm.config import lint

    path = _path(ctx)
    problems = lint.lint(path)
    for problem in problems:
        click.echo(problem.render())
    if problems:
        click.echo(lint.summary(problems))
        ctx.exit(1)
    click.echo(f"{path}: no problems")


@config.command("discover")
@click.option("--connect", "uri", metavar="URI", default=None,
              help=f"libvirt URI (default: the global --connect, else {DEFAULT_URI}).")
@click.option("-y", "--yes", is_flag=True, help="Import every domain found without asking.")
@click.pass_context
def discover_cmd(ctx: click.Context, uri: str | None, yes: bool) -> None:
    """List libvirt domains the config does not declare; offer to import them."""
    from aivm.config import discover, write

    path, uri = _path(ctx), _uri(ctx, uri)
    cfg = _config_or_empty(path)
    found = discover.unmanaged(read_domains(uri), cfg)
    if not found:
        click.echo(f"no domains at {uri} that {path} does not declare")
        return
    click.echo(f"{len(found)} domain(s) at {uri} not declared in {path}:")
    for domain in found:
        click.echo(f"  {domain.line()}")
    for domain in found:
        if _yes(ctx, yes) or click.confirm(f"import {domain.name}?", default=False):
            write.upsert_vm(path, discover.as_vm(domain, cfg.defaults))
            click.echo(f"imported {domain.name}")


def _config_or_empty(path: Path) -> Config:
    from aivm.config import load
    from aivm.config.schema import Config

    try:
        return load.load(path)
    except ConfigError as exc:
        if exc.reason != "no-config":
            raise
        return Config(path=path)


def read_domains(uri: str) -> list[Domain]:
    """Every domain at `uri`, read-only."""
    import libvirt

    from aivm.config.discover import STATES, Domain

    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        conn = libvirt.openReadOnly(uri)
    except libvirt.libvirtError as exc:
        raise AivmError(f"cannot connect to libvirt at {uri}: {exc.get_error_message()}",
                        hint="is libvirtd running? choose another URI with --connect",
                        reason="libvirt-unreachable") from None
    try:
        return [Domain(d.name(), STATES.get(info[0], "unknown"), info[3], info[1] // 1024)
                for d in conn.listAllDomains() for info in [d.info()]]
    finally:
        conn.close()
