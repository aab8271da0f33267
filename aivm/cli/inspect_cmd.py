"""`aivm path-info`, `aivm why-depends`, `aivm log`, `aivm lock`: the store as Nix users
know it (nix path-info, nix why-depends, nix log, flake.lock)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from aivm.cli.app import App
from aivm.errors import AivmError
from aivm.inspect.units import human_size


def _resolved(app: App, targets: tuple[str, ...]) -> tuple[Any, dict[str, Any], list[str],
                                                           dict[str, list[str]]]:
    """(graph, states, node names, VM -> its node names) for TARGETS (nodes or VMs;
    default: every declared VM)."""
    from aivm.graph import scheduler

    graph = app.graph(())
    states = scheduler.resolve(graph, app.registry(), app.store(), app.statcache())
    if not targets:
        targets = tuple(vm.name for vm in app.config(implicit=True).vms)
    names: list[str] = []
    vms: dict[str, list[str]] = {}
    for target in targets:
        if target in graph:
            names.append(target)
            continue
        vms[target] = graph.order(list(app.graph((target,)).nodes))
        names += vms[target]
    wanted = set(names)
    return graph, states, [n for n in graph.order(names) if n in wanted], vms


# path-info -----------------------------------------------------------------------------

@click.command("path-info")
@click.argument("targets", nargs=-1)
@click.option("--closure", is_flag=True, help="List every entry of each closure.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def path_info(app: App, targets: tuple[str, ...], closure: bool, as_json: bool) -> None:
    """Key, kind, size, closure size, qcow2 sizes and dates of TARGETS' store entries
    (nodes or VMs; default: every VM); for a VM also its writable disk and state files."""
    from aivm import paths
    from aivm.inspect import pathinfo

    _graph, states, names, vms = _resolved(app, targets)
    store = app.store()
    infos = [pathinfo.entry_info(store, n, states[n].kind, states[n].key, states[n].path)
             for n in names]
    owned = [pathinfo.vm_files(vm, _state_folder(app, vm, paths.vm_state_dir(vm)))
             for vm in vms]
    if as_json:
        click.echo(json.dumps({"entries": [i.to_json() for i in infos],
                               "vms": [v.to_json() for v in owned]}, indent=2))
        return
    for info in infos:
        _print_info(info, closure)
    for files in owned:
        click.echo(f"VM {files.vm}: {files.folder}")
        if not files.files:
            click.echo("  (no files: not created yet)")
        for f in files.files:
            click.echo(f"  {f.path.name}  {_disk(f)}")


def _state_folder(app: App, vm: str, default: Path) -> Path:
    """Where the VM's writable disk lives: the folder of its domain's disk param."""
    for node in app.graph((vm,)).nodes.values():
        if node.kind == "domain-xml" and node.params.get("disk"):
            return Path(str(node.params["disk"])).parent
    return default


def _print_info(info: Any, closure: bool) -> None:
    click.echo(f"{info.name} ({info.kind})")
    click.echo(f"  key      {info.key}")
    click.echo(f"  path     {info.path}")
    if not info.built:
        click.echo("  not built (aivm build builds it)")
        return
    click.echo(f"  size     {human_size(info.size)}, closure {human_size(info.closure_size)} "
               f"({len(info.closure)} entries)")
    click.echo(f"  created  {info.created}, built in {info.build_seconds:.2f} s")
    click.echo(f"  digest   {info.digest or '(none recorded)'}")
    for disk in info.disks:
        click.echo(f"  {disk.path.relative_to(info.path)}  {_disk(disk)}")
    if closure:
        from aivm.graph.store import tree_size

        for member in info.closure:
            click.echo(f"    {human_size(tree_size(member)):>10}  {member.name}")


def _disk(f: Any) -> str:
    if f.virtual is None:
        return human_size(f.allocated)
    back = f", backing {f.backing}" if f.backing else ""
    return f"virtual {human_size(f.virtual)}, allocated {human_size(f.allocated)}{back}"


# why-depends ---------------------------------------------------------------------------

@click.command("why-depends")
@click.argument("source")
@click.argument("target")
@click.option("--all", "every", is_flag=True, help="Every path, not only the shortest.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def why_depends(app: App, source: str, target: str, every: bool, as_json: bool) -> None:
    """Why SOURCE (a VM, node, entry or key prefix) depends on TARGET: the dependency
    path(s), through the declared graph, the store's manifests and the VM's gc roots."""
    from aivm.inspect import why

    graph, states, _names, vms = _resolved(app, (source,))
    g = why.dependency_graph(app.store(), states, vms)
    start = f"vm:{source}" if vms else states[source].path.name if source in states \
        else why.goals_for(g, source)[0]
    found = why.paths(g, start, why.goals_for(g, target), every=every)
    if as_json:
        click.echo(json.dumps({"from": source, "to": target,
                               "paths": [[h.to_json() for h in p] for p in found]}, indent=2))
    if not found:
        raise AivmError(f"{source} does not depend on {target}",
                        hint="`aivm graph` shows the declared graph", reason="no-dependency")
    if as_json:
        return
    for i, path in enumerate(found):
        if i:
            click.echo("")
        for depth, hop in enumerate(path):
            click.echo(f"{'  ' * depth}{'→ ' if depth else ''}{hop}")


# log -----------------------------------------------------------------------------------

@click.command("log")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def log(app: App, target: str, as_json: bool) -> None:
    """The build log of node TARGET, or of every node of VM TARGET plus its guest's console
    log. Build logs live in <store>/log/ (failed builds in <store>/log/failed/)."""
    from aivm import buildlog

    graph, states, names, vms = _resolved(app, (target,))
    store = app.store()
    logs: list[dict[str, Any]] = []
    for name in names:
        key = states[name].key
        path = buildlog.find(store.root, key)
        last = store.last_build(name)
        if path is None and last is not None:
            path = buildlog.find(store.root, last.key)
        if path is not None:
            guest = path.with_name(path.name.removesuffix(".log") + ".console.log")
            logs.append({"node": name, "path": str(path), "failed": path.parent.name == "failed",
                         "current": path.name.startswith(key), "text": path.read_text(
                             errors="replace"),
                         "builder_console": str(guest) if guest.is_file() else ""})
    console = _console(graph, vms.get(target, []))
    if not logs and console is None:
        raise AivmError(f"no build log for {target}",
                        hint="logs are kept from this aivm version on; build it to get one",
                        reason="no-log")
    if as_json:
        click.echo(json.dumps({"logs": logs, "console": console}, indent=2))
        return
    for item in logs:
        state = "failed build" if item["failed"] else "build"
        old = "" if item["current"] else ", an earlier key"
        click.echo(f"==> {item['node']}: {state} log {item['path']}{old}")
        click.echo(item["text"].rstrip("\n"))
        if item["builder_console"]:
            click.echo(f"(the builder guest's console: {item['builder_console']})")
    if console is not None:
        click.echo(f"==> console log of VM {target}: {console['path']}")
        click.echo(console["text"].rstrip("\n") if console["readable"] else
                   f"(cannot read it: {console['text']})")


def _console(graph: Any, names: list[str]) -> dict[str, Any] | None:
    """The serial console log the VM's domain XML points at (libvirt writes it)."""
    for name in names:
        node = graph.nodes[name]
        if node.kind == "domain-xml" and node.params.get("console_log"):
            path = Path(str(node.params["console_log"]))
            try:
                return {"path": str(path), "readable": True, "text": path.read_text(
                    errors="replace")}
            except OSError as exc:
                return {"path": str(path), "readable": False,
                        "text": exc.strerror or str(exc)}
    return None


# lock ----------------------------------------------------------------------------------

@click.command("lock")
@click.argument("names", nargs=-1)
@click.option("--update", is_flag=True,
              help="Write aivm.lock (only NAMES: image nodes, recipes, templates, tools).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def lock(app: App, names: tuple[str, ...], update: bool, as_json: bool) -> None:
    """Compare aivm.lock (beside the config) with what this machine resolves now, or
    `--update` it: image digests, recipe versions, template digests, tool versions."""
    from aivm import lock as locks
    from aivm.graph import scheduler

    path = locks.lock_path(app.config_path)
    states = scheduler.resolve(app.graph(()), app.registry(), app.store(), app.statcache())
    now = locks.current(states, app.registry(), app.store())
    old = locks.read(path)
    new: locks.Lock | None
    if update:
        new = locks.merged(old, now, names)
        changes = locks.differences(old or locks.Lock(), new)
        locks.write(path, new)
    else:
        new, changes = old, (locks.differences(old, now) if old else [])
    if as_json:
        click.echo(json.dumps({"path": str(path), "exists": new is not None, "updated": update,
                               "differences": changes,
                               "lock": new.to_json() if new else None}, indent=2))
        return
    if new is None:
        click.echo(f"no lock at {path}: `aivm lock --update` writes one")
        return
    verb = "updated" if update else "differs from this machine:"
    if not changes:
        click.echo(f"{path}: {'unchanged' if update else 'matches this machine'}")
        return
    click.echo(f"{path} {verb}")
    for line in changes:
        click.echo(f"  {line}")


TOP = (path_info, why_depends, log, lock)
VM_ALIASES: dict[str, click.Command] = {}
