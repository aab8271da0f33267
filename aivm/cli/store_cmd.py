"""`aivm store verify | keygen | push | copy`, and the binary-cache hooks of build and up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aivm.cli.app import App

if TYPE_CHECKING:
    from aivm.cache.substitute import Settings
    from aivm.graph.scheduler import BuildReport, Substitute

EXTRA = "aivm.substituters"  # click ctx.meta: --substituter URLs of this command


def _remember(ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> None:
    ctx.meta[EXTRA] = tuple(value)


def substituter_option(fn: Any) -> Any:
    """`--substituter URL` (repeatable): asked before the configured substituters."""
    return click.option("--substituter", "substituters", multiple=True, metavar="URL",
                        expose_value=False, callback=_remember,
                        help="A binary cache to substitute from (file:///PATH, "
                             "oci://REGISTRY/REPO); repeatable, asked first.")(fn)


def settings(app: App) -> Settings:
    """The `[store]` cache settings (defaults without a config) plus --substituter URLs."""
    from aivm.cache.substitute import Settings
    from aivm.config.checks import cache_url
    from aivm.errors import ConfigError, StoreError

    try:
        s = app.config().store
        base = Settings(s.substituters, s.trusted_keys, s.secret_key_file, s.push_to,
                        s.auto_push)
    except ConfigError as exc:
        if exc.reason != "no-config":
            raise
        base = Settings()
    ctx = click.get_current_context(silent=True)
    extra = tuple(ctx.meta.get(EXTRA, ())) if ctx is not None else ()
    for url in extra:
        if problem := cache_url(url):
            raise StoreError(problem[0], hint=problem[1], reason="cache-url")
    return Settings(extra + tuple(u for u in base.substituters if u not in extra),
                    base.trusted_keys, base.secret_key_file, base.push_to, base.auto_push)


def substitute_hook(app: App) -> Substitute | None:
    """What scheduler.build asks before building a stale node; None without substituters."""
    from aivm.cache.substitute import Substituter

    cfg = settings(app)
    return Substituter(cfg, app.notify).fetch if cfg.substituters else None


def after_build(app: App, report: BuildReport) -> None:
    """`[store] auto_push`: push what this build built (and its inputs) to `push_to`."""
    cfg = settings(app)
    if not (cfg.auto_push and cfg.push_to and report.built):
        return
    entries = [report.states[n].path for n in report.built]
    pushed = _push(app, cfg, entries, cfg.push_to)
    app.notify(f"pushed {len(pushed.entries)} entries to {cfg.push_to} "
               f"({_size(pushed.bytes_sent)} sent)")


def summary(report: BuildReport) -> str:
    return f"substituted {len(report.substituted)}, built {len(report.built)}"


@click.group("store")
def store() -> None:
    """The store beyond one machine: verify, sign, push and copy entries."""


@store.command()
@click.option("--repair", is_flag=True,
              help="Remove changed entries, then build (or substitute) them again.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def verify(app: App, repair: bool, as_json: bool) -> None:
    """Re-hash every entry against the output digest in its manifest; exit 1 if one changed."""
    from aivm.cache import verify as checker

    st = app.store().ensure()
    verdicts = checker.verify(st)
    bad = [v for v in verdicts if v.status in ("changed", "unreadable")]
    repaired = _repair(app, [v.entry for v in bad]) if repair and bad else []
    if as_json:
        click.echo(json.dumps({"entries": [v.to_json() for v in verdicts],
                               "changed": [v.entry.name for v in bad],
                               "repaired": repaired}, indent=2))
    else:
        for v in verdicts:
            if v.status != "ok":
                click.echo(f"{v.status} {v.entry.name}")
        click.echo(f"{len(verdicts)} entries checked, {len(bad)} changed"
                   + (f", {len(repaired)} repaired" if repair else ""))
    if len(bad) > len(repaired):
        click.get_current_context().exit(1)


def _repair(app: App, entries: list[Path]) -> list[str]:
    """Remove the changed entries, then build every declared node again that is now stale
    (substituting first); the names of the changed entries that are back and sound."""
    from aivm.cache import verify as checker
    from aivm.cli import progress
    from aivm.graph.store import remove_tree

    st = app.store()
    with st.lock(exclusive=True):
        for entry in entries:
            remove_tree(entry)
    progress.build(app, app.graph(()))
    return [e.name for e in entries
            if e.is_dir() and checker.verify_entry(st, e).status == "ok"]


@store.command()
@click.option("--name", default="", help="Key name (default: the host name).")
@click.option("--out", "out", default="", metavar="PATH",
              help="Secret key file (default: ~/.config/aivm/store-secret-key).")
def keygen(name: str, out: str) -> None:
    """Make an ed25519 signing key; print the public key to trust (`[store] trusted_keys`)."""
    import socket

    from aivm.cache import sign

    path = Path(out).expanduser() if out else sign.default_secret_path()
    secret = sign.keygen(path, name or socket.gethostname().split(".")[0])
    click.echo(f"secret key written to {path} (set [store] secret_key_file to it)", err=True)
    click.echo(secret.public)


@store.command()
@click.argument("targets", nargs=-1)
@click.pass_obj
def push(app: App, targets: tuple[str, ...]) -> None:
    """Upload the entries of TARGETS (VMs or nodes; default every VM) and their inputs to
    `[store] push_to`, signed with `[store] secret_key_file`."""
    from aivm.errors import StoreError

    cfg = settings(app)
    if not cfg.push_to:
        raise StoreError("no cache to push to", hint="set [store] push_to, or use "
                         "`aivm store copy --to URL`", reason="no-push-target")
    _report(_push(app, cfg, _target_entries(app, targets), cfg.push_to), cfg.push_to)


@store.command()
@click.argument("targets", nargs=-1)
@click.option("--to", "to", required=True, metavar="URL",
              help="The cache: file:///PATH or oci://REGISTRY/REPO, or another host's "
                   "store: ssh://[USER@]HOST[:PORT].")
@click.pass_obj
def copy(app: App, targets: tuple[str, ...], to: str) -> None:
    """Copy the closures of TARGETS (VMs or nodes; default every VM) to the cache URL."""
    from aivm.config.checks import copy_url
    from aivm.errors import StoreError

    if problem := copy_url(to):
        raise StoreError(problem[0], hint=problem[1], reason="cache-url")
    _report(_push(app, settings(app), _target_entries(app, targets), to), to)


def _target_entries(app: App, targets: tuple[str, ...]) -> list[Path]:
    from aivm.cli.build_cmd import _graph_for
    from aivm.errors import StoreError
    from aivm.graph import scheduler

    graph, names = _graph_for(app, targets)
    states = scheduler.resolve(graph, app.registry(), app.store(), app.statcache(), names)
    missing = [n for n, s in states.items() if not s.cached]
    if missing:
        raise StoreError(f"not built yet: {', '.join(missing)}",
                         hint="run `aivm build` first", reason="not-built")
    return [s.path for s in states.values()]


def _push(app: App, cfg: Settings, entries: list[Path], url: str) -> Any:
    from aivm.cache import sign
    from aivm.cache.backends import open_cache
    from aivm.cache.substitute import push as upload

    secret = sign.load_secret(Path(cfg.secret_key_file).expanduser()) \
        if cfg.secret_key_file else None
    if secret is None:
        app.notify("warning: no [store] secret_key_file: entries are pushed unsigned, "
                   "and substituters refuse unsigned entries")
    st = app.store()
    with st.lock(exclusive=False):
        return upload(st, entries, open_cache(url), secret)


def _report(pushed: Any, url: str) -> None:
    click.echo(f"pushed {len(pushed.entries)} entries to {url}, {_size(pushed.bytes_sent)} "
               f"uploaded ({pushed.bytes_sent} bytes)")
    for line in pushed.skipped:
        click.echo(f"not pushed {line}")


def _size(n: int) -> str:
    from aivm.cli.gc_cmd import _size as size

    return size(n)


TOP = (store,)
VM_ALIASES: dict[str, Any] = {}
