"""Decide what is stale, and build it.

`resolve()` keys every node (inputs first) and looks each key up in the
store; a stale node carries its reasons. `build()` runs the recipes of stale
nodes in dependency order, independent ones in parallel on a bounded pool;
a failure skips its dependants and names them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aivm import buildlog, urls
from aivm.errors import AivmError, BuildError
from aivm.graph import explain, keys
from aivm.graph.graph import Graph
from aivm.graph.node import BuildContext, ByteProgress, Node, Registry
from aivm.graph.statcache import StatCache
from aivm.graph.store import Manifest, Store, safe_name

if TYPE_CHECKING:   # a no-op build starts no thread pool (concurrent.futures: ~6 ms)
    import concurrent.futures as cf

EventKind = Literal["start", "progress", "done", "reused", "substituted", "failed", "skipped"]


@dataclass(frozen=True)
class BuildEvent:
    """What the scheduler tells its caller about node `name`; the fields of its `kind`:
    start: reasons · progress: advance (an increment) or position (bytes done in all),
    total · done/reused/substituted: seconds · failed: error · skipped: because."""

    kind: EventKind
    name: str
    reasons: tuple[str, ...] = ()
    advance: int | None = None
    position: int | None = None
    total: int | None = None
    seconds: float = 0.0
    error: str = ""
    because: str = ""


Event = Callable[[BuildEvent], None]
_DONE: dict[str, EventKind] = {"built": "done", "reused": "reused", "substituted": "substituted"}
# (store, key, name, kind, progress) -> the entry committed from a binary cache, or None
Substitute = Callable[[Store, str, str, str, "ByteProgress | None"], "Path | None"]


@dataclass(frozen=True)
class NodeState:
    name: str
    kind: str
    key: str
    path: Path
    cached: bool
    reasons: tuple[str, ...] = ()
    material: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class BuildReport:
    states: dict[str, NodeState]
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)   # built meanwhile by another process
    substituted: list[str] = field(default_factory=list)  # fetched from a binary cache
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cached(self) -> list[str]:
        return [n for n, s in self.states.items() if s.cached]

    def to_json(self) -> dict[str, Any]:
        return {
            "built": self.built, "reused": self.reused, "cached": self.cached,
            "substituted": self.substituted,
            "failed": self.failed,
            "skipped": self.skipped,
            "nodes": {n: {"kind": s.kind, "key": s.key, "path": str(s.path),
                          "stale": not s.cached, "reasons": list(s.reasons)}
                      for n, s in self.states.items()},
        }


class Keyer:
    """Computes keys, remembering template and file digests within one run."""

    def __init__(self, registry: Registry, statcache: StatCache) -> None:
        self.registry = registry
        self.statcache = statcache
        self._templates: dict[str, str] = {}

    def template_digest(self, name: str) -> str:
        if name not in self._templates:
            text = self.registry.template_path(name).read_bytes()
            self._templates[name] = keys.bytes_digest(text)
        return self._templates[name]

    def material(self, node: Node, input_keys: Mapping[str, str]) -> dict[str, Any]:
        if node.fixed_output:
            return keys.material(node, version=0, defaults={}, input_keys={},
                                 template_digests={}, file_digests={})
        recipe = self.registry.recipe(node.kind)
        files = {role: self._file_digest(node, role, p) for role, p in node.files.items()}
        return keys.material(
            node, version=recipe.version, defaults=recipe.defaults, input_keys=input_keys,
            template_digests={t: self.template_digest(t) for t in recipe.templates},
            file_digests=files)

    def _file_digest(self, node: Node, role: str, path: Path) -> str:
        try:
            return self.statcache.digest(Path(path).expanduser())
        except OSError as exc:
            raise AivmError(f"node {node.name}: cannot read {role} file {path}: {exc.strerror}",
                            hint="check the path in your config", reason="input-file") from exc


def resolve(graph: Graph, registry: Registry, store: Store, statcache: StatCache,
            targets: Iterable[str] | None = None) -> dict[str, NodeState]:
    """Key every node needed by `targets` (all when None) and say which are stale."""
    keyer = Keyer(registry, statcache)
    states: dict[str, NodeState] = {}
    for name in graph.order(targets):
        node = graph.nodes[name]
        mat = keyer.material(node, {r: states[d].key for r, d in node.inputs.items()})
        key = keys.derive(mat)
        path = store.entry_path(key, name)
        cached = (path / "manifest.json").is_file()
        why = () if cached else explain.reasons(store.last_build(name), mat, name=name)
        states[name] = NodeState(name, node.kind, key, path, cached, why, mat)
    statcache.save()
    return states


def build(graph: Graph, registry: Registry, store: Store, statcache: StatCache, *,
          targets: Iterable[str] | None = None, jobs: int = 2, keep_going: bool = False,
          on_event: Event | None = None, substitute: Substitute | None = None) -> BuildReport:
    """Build every stale node needed by `targets`; raise BuildError if any failed.

    Before the store lock is released, every entry of the build is held as a pending
    root (`Store.hold`) for as long as `store` lives: a gc that runs while the caller
    asks its questions keeps them, until the caller's own roots are written."""
    emit: Event = on_event or (lambda _event: None)
    store.ensure()
    with store.lock(exclusive=False):
        store.sweep_temporaries()
        report = BuildReport(resolve(graph, registry, store, statcache, targets))
        stale = [n for n, s in report.states.items() if not s.cached]
        for name in stale:
            registry.recipe(graph.nodes[name].kind).preflight(graph.nodes[name])
        try:
            _run(graph, registry, store, report, stale, jobs, keep_going, emit, substitute)
        finally:
            store.hold(s.path for s in report.states.values())
    if report.failed:
        raise _failure(report)
    return report


def _run(graph: Graph, registry: Registry, store: Store, report: BuildReport,
         stale: list[str], jobs: int, keep_going: bool, emit: Event,
         substitute: Substitute | None = None) -> None:
    if not stale:
        return    # a no-op build starts no thread pool
    import concurrent.futures as cf

    pending = set(stale)
    running: dict[cf.Future[tuple[float, str]], str] = {}
    with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while pending or running:
            stop = bool(report.failed) and not keep_going
            for name in ([] if stop else _ready(graph, pending, report)):
                pending.discard(name)
                emit(BuildEvent("start", name, reasons=tuple(report.states[name].reasons)))
                running[pool.submit(_build_one, graph, registry, store, report, name, emit,
                                    substitute)] = name
            if not running:
                for name in sorted(pending):
                    report.skipped[name] = _blocker(graph, name, report) or "not started"
                return
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                _settle(graph, report, pending, name, fut, emit)


def _ready(graph: Graph, pending: set[str], report: BuildReport) -> list[str]:
    ready = []
    for name in sorted(pending):
        deps = graph.nodes[name].inputs.values()
        if all(report.states[d].cached or d in report.built or d in report.reused
               or d in report.substituted for d in deps):
            ready.append(name)
    return ready


def _settle(graph: Graph, report: BuildReport, pending: set[str], name: str,
            fut: cf.Future[tuple[float, str]], emit: Event) -> None:
    try:
        report.seconds[name], how = fut.result()
        {"built": report.built, "reused": report.reused,
         "substituted": report.substituted}[how].append(name)
        emit(BuildEvent(_DONE[how], name, seconds=report.seconds[name]))
    except Exception as exc:  # a recipe failure of any kind becomes a report line
        message = _message(exc)
        report.failed[name] = message
        emit(BuildEvent("failed", name, error=message))
        for dep in sorted(graph.dependants(name) & pending):
            pending.discard(dep)
            report.skipped[dep] = name
            emit(BuildEvent("skipped", dep, because=name))


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, AivmError) else f"{type(exc).__name__}: {exc}"


def _blocker(graph: Graph, name: str, report: BuildReport) -> str:
    deps = set(graph.nodes[name].inputs.values())
    return next((d for d in sorted(deps) if d in report.failed or d in report.skipped), "")


def _build_one(graph: Graph, registry: Registry, store: Store, report: BuildReport,
               name: str, emit: Event, substitute: Substitute | None = None) -> tuple[float, str]:
    node = graph.nodes[name]
    state = report.states[name]
    recipe = registry.recipe(node.kind)
    ctx = context(graph, report.states, name, _ProgressEvents(name, emit))
    started = time.monotonic()
    if substitute is not None and substitute(store, state.key, name, node.kind, ctx.progress):
        return time.monotonic() - started, "substituted"
    try:
        with buildlog.sink(store.root, state.key, name, node.kind):
            _, ours = store.commit(state.key, name, lambda into: recipe.build(ctx, into),
                                   lambda size, secs: _manifest(node, state, size, secs))
            if ours:
                buildlog.keep()
    except Exception as exc:  # the error names the failed build's log
        raise BuildError(f"{_message(exc)} (log: {buildlog.failed_path(store.root, state.key)})",
                         reason="build-failed") from exc
    return time.monotonic() - started, "built" if ours else "reused"


def context(graph: Graph, states: Mapping[str, NodeState], name: str,
            progress: ByteProgress | None = None) -> BuildContext:
    """What the recipe of node `name` reads while building (also `aivm build --check`)."""
    node, state = graph.nodes[name], states[name]
    return BuildContext(
        node=node, key=state.key,
        inputs={r: states[d].path for r, d in node.inputs.items()},
        files={r: Path(p).expanduser() for r, p in node.files.items()},
        progress=progress, file_digests=state.material.get("files", {}))


@dataclass(frozen=True)
class _ProgressEvents:
    """A node's ByteProgress as "progress" build events with `advance` or `position`."""

    name: str
    emit: Event

    def advanced(self, nbytes: int, total: int | None) -> None:
        self.emit(BuildEvent("progress", self.name, advance=nbytes, total=total))

    def reached(self, position: int, total: int | None) -> None:
        self.emit(BuildEvent("progress", self.name, position=position, total=total))


def _manifest(node: Node, state: NodeState, size: int, seconds: float) -> Manifest:
    from datetime import UTC, datetime

    mat = state.material
    # a fixed-output key has no params: the manifest shows them with URL secrets redacted
    params = mat["params"] if "params" in mat else urls.redact_params(node.params)
    return Manifest(
        key=state.key, name=node.name, kind=node.kind, version=int(mat.get("version", 0)),
        params=params, inputs=mat.get("inputs", {}),
        input_entries={r: Path(p).name for r, p in _input_paths(node, state).items()},
        templates=mat.get("templates", {}), files=mat.get("files", {}),
        created=datetime.now(UTC).isoformat(timespec="seconds"), size=size,
        build_seconds=round(seconds, 3))


def _input_paths(node: Node, state: NodeState) -> dict[str, str]:
    # entry directory names of the inputs: "<key[:32]>-<name>", derivable from the material
    return {r: f"{k[:32]}-{safe_name(node.inputs[r])}"
            for r, k in state.material.get("inputs", {}).items()}


def _failure(report: BuildReport) -> BuildError:
    lines = [f"{n}: {msg}" for n, msg in sorted(report.failed.items())]
    skipped = sorted(report.skipped)
    text = "; ".join(lines)
    if skipped:
        text += f" (skipped because of it: {', '.join(skipped)})"
    return BuildError(f"{len(report.failed)} node(s) failed to build: {text}",
                      hint="fix the cause and run the build again; built nodes are kept",
                      reason="build-failed")
