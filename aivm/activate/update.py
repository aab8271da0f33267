"""`aivm vm update`: make a defined VM match its config again, restarting only when asked.

What can drift: cpus, memory, accel, network and MAC (in the domain
definition: they reach a running guest only through a restart), the disk size
(grown with `qemu-img resize` while the VM is off, or libvirt's blockResize
while it runs; never shrunk), the network and its ruleset (the same plans as
`aivm up`). Changes are compared with the configuration the guest *runs* with,
so a change left pending by `--restart never` is still reported next time.

Restart policy: `auto` restarts a running VM when a change needs it, `always`
restarts it whenever anything changes, `never` leaves a note instead. A
stopped VM is never started: its new definition applies at its next start.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from aivm import qcow2
from aivm.activate import disk, live
from aivm.activate import plan as plans
from aivm.activate import up as activation
from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.errors import AivmError
from aivm.graph.store import Store
from aivm.run import Cmd

GIB = 2**30


class Restart(StrEnum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class Change:
    what: str
    live: str
    desired: str
    restart: bool  # a running guest sees it only after a restart

    @property
    def line(self) -> str:
        when = "needs a restart" if self.restart else "applies without a restart"
        return f"{self.what}: {self.live} -> {self.desired} ({when})"

    def to_json(self) -> dict[str, object]:
        return {"what": self.what, "live": self.live, "desired": self.desired,
                "restart": self.restart}


@dataclass(frozen=True)
class Update:
    plan: Plan
    changes: tuple[Change, ...]
    running: bool
    restarts: bool  # the plan restarts the VM


def disk_size(path: Path) -> int:
    """The virtual size in a qcow2 header (no subprocess, no image lock); 0 when unreadable."""
    header = qcow2.read_header(path)
    return header.virtual_size if header else 0


def domain_changes(desired: live.DomainState, running: live.DomainState) -> tuple[Change, ...]:
    return tuple(Change(d.what, d.live, d.desired, True)
                 for d in live.drift(desired, running)
                 if d.what not in ("disks", "definition"))


def disk_change(have: int, want: int) -> Change | None:
    if want <= have:
        return None
    return Change("disk", _gib(have), _gib(want), False)


def _gib(size: int) -> str:
    return f"{size / GIB:g} GiB"


def plan_update(conn: live.Conn, store: Store, art: activation.Artifacts, *,
                restart: Restart = Restart.AUTO, disk_file: Path | None = None) -> Update:
    name = art.vm.name
    from aivm.activate import hostnet

    hostnet.check(conn, art.network)   # the network's bridge and subnet are free on this host
    persistent = live.read_domain(conn, name)
    if not persistent.exists:
        raise AivmError(f"VM {name} is not defined", hint=f"`aivm up {name}` creates it",
                        reason="vm-not-defined")
    if persistent.key is None:
        raise AivmError(f"VM {name} exists in libvirt but was not defined by aivm",
                        hint="choose another name in the config", reason="not-aivm-owned")
    xml = art.domain_text()
    desired = live.parse_domain(xml, exists=False)
    running = live.read_domain(conn, name, running=True)
    path = disk_file or disk.disk_path(name)
    have, want = disk_size(path), art.vm.disk_gib * GIB
    grow = disk_change(have, want) if have else None
    changes = domain_changes(desired, running) + ((grow,) if grow else ())
    redefine = persistent.key != desired.key
    restarts = persistent.active and (
        (restart is Restart.ALWAYS and bool(changes or redefine))
        or (restart is Restart.AUTO and any(c.restart for c in changes)))
    body = plans.of(
        activation.access_step(art),
        activation.network_part(conn, art),
        activation.firewall_plan(art),
        _redefine(conn, art, xml, persistent.uuid, changes) if redefine else None,
        _apply(conn, name, path, want, grow, persistent.active, restarts),
        activation.roots_step(store, art),
        activation.backing_root_step(store, art, path),
        *_notes(name, path, have, want, changes, persistent.active, restarts),
    )
    return Update(body, changes, persistent.active, restarts)


def _redefine(conn: live.Conn, art: activation.Artifacts, xml: str, uuid: str,
              changes: tuple[Change, ...]) -> Step:
    name = art.vm.name
    why = "; ".join(c.line for c in changes if c.restart) or \
        "the store has a newer definition (the same resources)"
    return Step(f"Redefine VM {name}", why,
                (live.define_domain(conn, xml, str(art.domain_xml.parent), uuid),))


def _apply(conn: live.Conn, name: str, path: Path, want: int, grow: Change | None,
           active: bool, restarts: bool) -> Plan | None:
    """The disk growth and the restart, in the order they must run."""
    if active and not restarts:
        return plans.of(_grow_live(conn, name, path, want, grow) if grow else None)
    resize = _grow_offline(name, path, want, grow) if grow else None
    if not restarts:
        return plans.of(resize)
    why = "the new definition reaches the guest only through a restart"
    return plans.of(
        Step(f"Shut down VM {name}", why, (live.shutdown_domain(conn, name),)),
        resize,
        Step(f"Start VM {name}", "it boots with its new definition",
             (live.start_domain(conn, name),)))


def _grow_offline(name: str, path: Path, want: int, grow: Change) -> Step:
    root = disk.needs_root(path)
    cmd = Cmd.of("qemu-img", "resize", "-q", "-f", "qcow2", str(path), str(want), root=root,
                 meaning=f"grow {path.name} to {grow.desired} (never shrinks)")
    return Step(f"Grow the disk of VM {name}", f"disk_gib: {grow.live} -> {grow.desired}; "
                "the guest grows its filesystem at boot (cloud-init resizefs)",
                (Action.command(cmd),), Privilege.ROOT if root else Privilege.USER,
                Effect.SYSTEM_WRITE if root else Effect.USER_WRITE)


def _grow_live(conn: live.Conn, name: str, path: Path, want: int, grow: Change) -> Step:
    def resize() -> None:
        import libvirt

        conn.lookupByName(name).blockResize(str(path), want, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)

    action = Action.api(f"grow the running VM's disk to {grow.desired}",
                        f"libvirt[{live.uri_of(conn)}] lookupByName({name!r})"
                        f".blockResize({str(path)!r}, {want}, BYTES)", resize)
    return Step(f"Grow the disk of VM {name}", f"disk_gib: {grow.live} -> {grow.desired}; "
                "the guest sees the new size now and grows its filesystem at its next boot",
                (action,))


def _notes(name: str, path: Path, have: int, want: int, changes: tuple[Change, ...],
           active: bool, restarts: bool) -> list[str]:
    notes = []
    if not have:
        notes.append(f"VM {name} has no writable disk at {path}: `aivm up {name}` makes it")
    elif want < have:
        notes.append(f"disk of VM {name}: disk_gib {_gib(want)} is below its {_gib(have)}; "
                     f"disks never shrink (`aivm up --recreate {name}` starts over)")
    pending = [c.what for c in changes if c.restart]
    if active and pending and not restarts:
        notes.append(f"VM {name}: {', '.join(pending)} change(s) apply after a restart "
                     f"(`aivm restart {name}`, or `aivm vm update {name} --restart auto`)")
    if not active and changes:
        notes.append(f"VM {name} is stopped: the changes apply at its next start")
    return notes
