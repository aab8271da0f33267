"""`aivm build --check`: rebuild existing entries aside and compare output digests.

Each entry is rebuilt by its recipe into `<store>/.tmp-<key[:32]>-check-*` (holding
the key's lock and the store's shared lock, so gc and the temp sweep leave it alone),
its output digest (aivm/graph/digest.py) compared with the one its manifest records,
and the rebuild removed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aivm import fsutil
from aivm.graph.store import MANIFEST, Store, remove_tree

# kinds whose rebuild is known not to be bit-identical, and why
NOT_REPRODUCIBLE: Mapping[str, str] = {
    "debootstrap": "mmdebstrap's tree is packed by mkfs.ext4, which stamps a random filesystem "
                   "UUID, hash seed and the current time into the image (SOURCE_DATE_EPOCH "
                   "makes the tree's file dates fixed, not the filesystem's)",
    "debootstrap-disk": "the ext4 image carries mkfs.ext4's random UUID and creation time",
    "provision": "a builder guest boots and runs apt: package caches, logs, random seeds and "
                 "file times differ on every boot",
    "booted-state": "a memory snapshot of a running guest",
}


@dataclass(frozen=True)
class Checked:
    name: str
    kind: str
    status: str        # "reproducible" | "differs" | "not-built" | "failed"
    recorded: str = ""
    rebuilt: str = ""
    seconds: float = 0.0
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "status": self.status,
                "recorded": self.recorded, "rebuilt": self.rebuilt,
                "seconds": round(self.seconds, 3), "detail": self.detail}


def check(graph: Any, registry: Any, store: Store, states: Mapping[str, Any],
          names: Iterable[str]) -> list[Checked]:
    """Rebuild each named node whose entry (and inputs) exist; compare digests."""
    from aivm.graph import scheduler

    out = []
    with store.lock(exclusive=False):
        for name in names:
            state = states[name]
            node = graph.nodes[name]
            missing = [d for d in node.inputs.values() if not states[d].cached]
            if not state.cached or missing:
                out.append(Checked(name, state.kind, "not-built",
                                   detail="build it first" + (f" (inputs {', '.join(missing)})"
                                                              if missing else "")))
                continue
            ctx = scheduler.context(graph, states, name)
            out.append(_one(store, state, lambda into, ctx=ctx, kind=node.kind:
                            registry.recipe(kind).build(ctx, into)))
    return out


def _one(store: Store, state: Any, build: Any) -> Checked:
    from aivm.graph.digest import entry_digest

    recorded = store.manifest(state.path).digest or entry_digest(state.path)
    key32 = state.key[:32]
    tmp = store.root / f".tmp-{key32}-check-{os.getpid()}-{time.monotonic_ns()}"
    started = time.monotonic()
    with fsutil.locked(store.root / "locks" / f"{key32}.lock"):
        tmp.mkdir()
        try:
            build(tmp)
            (tmp / MANIFEST).unlink(missing_ok=True)
            rebuilt = entry_digest(tmp)
        except Exception as exc:  # a rebuild that fails is a finding, not a crash
            return Checked(state.name, state.kind, "failed",
                           detail=getattr(exc, "message", None) or str(exc))
        finally:
            remove_tree(tmp)
    status = "reproducible" if rebuilt == recorded else "differs"
    detail = NOT_REPRODUCIBLE.get(state.kind, "") if status == "differs" else ""
    return Checked(state.name, state.kind, status, recorded, rebuilt,
                   time.monotonic() - started, detail)


def by_kind(results: Iterable[Checked]) -> dict[str, str]:
    """kind -> "reproducible" | "differs" (any differing entry makes its kind differ)."""
    kinds: dict[str, str] = {}
    for r in results:
        if r.status in ("reproducible", "differs"):
            kinds[r.kind] = "differs" if "differs" in (r.status, kinds.get(r.kind)) \
                else "reproducible"
    return dict(sorted(kinds.items()))
