"""`aivm.lock`: the resolved inputs that make keys reproducible on another machine.

Beside the config file. It records, per image node, the pinned sha256 or the
output digest of the built image; the version of every recipe and the digest of
every template the graph uses; and the versions of the external tools whose
output lands in entries (qemu-img, mmdebstrap, QEMU). The lock never feeds keys:
it is a record to compare against. `aivm lock --update [NAME]` refreshes it
deliberately; a build that built something with tools other than the locked ones
says so (tools are probed only then, never on the no-op path).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aivm import fsutil
from aivm.errors import ConfigError

LOCK_NAME = "aivm.lock"
IMAGE_KINDS = frozenset({"fetch", "local-image", "debootstrap", "debootstrap-disk", "provision"})
# tool -> (argv printing its version, the node kinds whose output it shapes)
TOOLS: Mapping[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "qemu-img": (("qemu-img", "--version"),
                 frozenset({"debootstrap-disk", "overlay", "provision", "local-image"})),
    "mmdebstrap": (("mmdebstrap", "--version"), frozenset({"debootstrap"})),
    "qemu": (("qemu-system-x86_64", "--version"), frozenset({"provision", "booted-state"})),
}
HEADER = ("# aivm.lock: written by `aivm lock --update`; it does not change keys.\n"
          "# Commit it with the config so another machine can compare what it builds.\n")


@dataclass(frozen=True)
class Lock:
    images: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    recipes: Mapping[str, int] = field(default_factory=dict)
    templates: Mapping[str, str] = field(default_factory=dict)
    tools: Mapping[str, str] = field(default_factory=dict)

    SECTIONS = ("images", "recipes", "templates", "tools")

    def to_json(self) -> dict[str, Any]:
        return {s: {k: (dict(v) if isinstance(v, Mapping) else v)
                    for k, v in sorted(getattr(self, s).items())} for s in self.SECTIONS}

    def to_toml(self) -> str:
        import tomlkit

        return HEADER + tomlkit.dumps(self.to_json())


def lock_path(config_path: Path) -> Path:
    return config_path.parent / LOCK_NAME


def read(path: Path) -> Lock | None:
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}",
                          hint="fix it, or write a new one with `aivm lock --update`",
                          reason="bad-lock") from exc
    return Lock(**{s: dict(data.get(s, {})) for s in Lock.SECTIONS})


def write(path: Path, lock: Lock) -> None:
    fsutil.atomic_write(path, lock.to_toml())


def probe_tools(names: Iterable[str] | None = None) -> dict[str, str]:
    """The first line each tool prints for --version ("missing" when not installed)."""
    from aivm import run

    out = {}
    for name in sorted(TOOLS if names is None else names):
        argv = TOOLS[name][0]
        if run.which(argv[0]) is None:
            out[name] = "missing"
            continue
        result = run.run(run.Cmd.of(*argv, meaning=f"{name} version"), check=False)
        lines = (result.stdout or result.stderr).strip().splitlines()
        out[name] = lines[0].strip() if lines else "unknown"
    return out


def current(states: Mapping[str, Any], registry: Any, store: Any, *,
            tools: bool = True) -> Lock:
    """The lock of this graph now. `states`: scheduler.resolve's (keys and materials)."""
    images: dict[str, dict[str, str]] = {}
    recipes: dict[str, int] = {}
    templates: dict[str, str] = {}
    for name, state in states.items():
        recipes[state.kind] = int(state.material.get("version", 0)) or \
            registry.recipe(state.kind).version
        templates.update(state.material.get("templates", {}))
        if state.kind in IMAGE_KINDS:
            images[name] = _image(state, store)
    return Lock(images, recipes, templates, probe_tools() if tools else {})


def _image(state: Any, store: Any) -> dict[str, str]:
    entry: dict[str, str] = {"kind": state.kind, "key": state.key}
    pinned = state.material.get("fixed_output")
    if pinned:
        entry["sha256"] = str(pinned)
    if state.cached:
        digest = store.manifest(state.path).digest
        if digest:
            entry["digest"] = digest
    return entry


def merged(old: Lock | None, new: Lock, names: Iterable[str]) -> Lock:
    """`new` in full when no names are given; else `old` with only the named items
    (an image node, recipe kind, template or tool) taken from `new`."""
    wanted = set(names)
    if old is None or not wanted:
        return new
    unknown = wanted - {k for s in Lock.SECTIONS for k in getattr(new, s)}
    if unknown:
        raise ConfigError(f"nothing named {', '.join(sorted(unknown))} in the lock",
                          hint="name an image node, recipe kind, template or tool "
                               "(see `aivm lock --json`)", reason="unknown-lock-item")
    return Lock(**{s: {**getattr(old, s),
                       **{k: v for k, v in getattr(new, s).items() if k in wanted}}
                   for s in Lock.SECTIONS})


def differences(old: Lock, new: Lock, sections: Iterable[str] = Lock.SECTIONS) -> list[str]:
    """One line per item that differs: "<section>.<name>: <locked> -> <now>"."""
    lines = []
    for s in sections:
        before, after = old.to_json()[s], new.to_json()[s]
        for k in sorted(set(before) | set(after)):
            if before.get(k) != after.get(k):
                lines.append(f"{s}.{k}: {_show(before.get(k))} -> {_show(after.get(k))}")
    return lines


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)


def tool_drift(path: Path, built_kinds: Iterable[str]) -> list[str]:
    """After a build: the tools that shaped what was built, where they differ from the lock.
    Probes only those tools, and only when a lock exists."""
    lock = read(path)
    kinds = set(built_kinds)
    if lock is None or not lock.tools or not kinds:
        return []
    used = [t for t, (_argv, shaped) in TOOLS.items() if shaped & kinds and t in lock.tools]
    now = probe_tools(used)
    return [f"{t}: {now[t]} here, {lock.tools[t]} in {path.name}"
            for t in used if now[t] != lock.tools[t]]
