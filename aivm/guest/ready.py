"""The ready stamp: "this run of the VM was ready", so a no-op `aivm up` need not wait again.

`aivm up` waits for a lease, ssh and cloud-init (about 9 s even when all is
long done). Once a run of the domain was seen ready, the stamp records which
run it was: the domain's UUID and libvirt ID (a new ID on every start or
restore) and the CPU time it had used then. A later `aivm up` whose plan is
empty trusts the stamp when the domain still runs under the same UUID and ID
and its CPU time has not gone backwards (a fresh QEMU starts from zero), and
then only probes ssh once. Anything else (a stopped, restarted, restored or
re-created VM, a missing or unreadable stamp) means the full wait.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from aivm import fsutil, paths


@dataclass(frozen=True)
class Run:
    uuid: str
    id: int
    cpu_ns: int


def current_run(conn: Any, name: str) -> Run | None:
    """The running domain's identity, None when it is not running."""
    from aivm.activate import live

    dom = live.lookup_domain(conn, name)
    if dom is None or not dom.isActive():
        return None
    return Run(dom.UUIDString(), int(dom.ID()), int(dom.info()[4]))


def stamp_file(vm: str):  # type: ignore[no-untyped-def]
    return paths.user_state_dir() / "vms" / f"{vm}.ready.json"


def record(conn: Any, vm: str) -> None:
    run = current_run(conn, vm)
    if run is None:
        return
    path = stamp_file(vm)
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(path, json.dumps(asdict(run)))


def forget(vm: str) -> None:
    stamp_file(vm).unlink(missing_ok=True)


def recorded(vm: str) -> Run | None:
    try:
        data = json.loads(stamp_file(vm).read_text())
        return Run(str(data["uuid"]), int(data["id"]), int(data["cpu_ns"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def still_ready(conn: Any, vm: str) -> bool:
    """True when the run recorded ready is the one running now."""
    then, now = recorded(vm), current_run(conn, vm)
    return then is not None and now is not None and (then.uuid, then.id) == (now.uuid, now.id) \
        and now.cpu_ns >= then.cpu_ns
