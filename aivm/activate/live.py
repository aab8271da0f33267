"""Live libvirt state, read and changed through libvirt-python (never `virsh` text).

Networks and domains carry the key of the store entry they were defined from
in `<metadata>`; when the live key equals the desired key there is nothing to
redefine. Reading is plain functions returning frozen snapshots; changing is
`Action`s (API calls with the text the user approves) grouped into `Step`s by
`network_plan` and `domain_plan`.

libvirt is imported inside functions: the no-op CLI path must not pay for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from aivm.activate import plan as plans
from aivm.activate.plan import Action, Plan, Step
from aivm.errors import AivmError

DEFAULT_URI = "qemu:///system"
# The recipes write one of these; any element in them with a `key` attribute,
# or an `<aivm:key>` child element, carries the node key.
NAMESPACES = ("https://github.com/Erotemic/aivm/xmlns/node/1", "https://aivm.dev/xmlns/aivm/1")

Conn = Any  # a libvirt.virConnect


def connect(uri: str = DEFAULT_URI) -> Conn:
    """Open `uri`; raise `libvirt-unreachable` with what to do when it fails."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # no stray stderr lines
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise AivmError(
            f"cannot reach libvirt at {uri}: {exc.get_error_message()}",
            hint="start the daemon (`libvirtd -d`), add yourself to the libvirt group "
                 "(`adduser $USER libvirt`, then log in again), or pass --connect URI",
            reason="libvirt-unreachable") from exc


def runs_qemu_here(conn: Conn) -> bool:
    """Whether guests of `conn` are QEMU processes on this host (host mounts matter then);
    libvirt's test driver, for one, runs none."""
    return str(conn.getType()).upper() == "QEMU" and not str(conn.getURI()).startswith(
        ("qemu+ssh:", "qemu+tcp:", "qemu+tls:"))


def uri_of(conn: Conn) -> str:
    return str(conn.getURI())


# ---- reading metadata and XML ---------------------------------------------------------------

def node_key(xml: str) -> str | None:
    """The aivm node key in a network or domain XML's `<metadata>`, or None."""
    meta = ElementTree.fromstring(xml).find("metadata")
    if meta is None:
        return None
    for el in meta.iter():
        if _namespace(el.tag) not in NAMESPACES:
            continue
        if el.get("key"):
            return el.get("key")
        if el.tag.endswith("}key") and (el.text or "").strip():
            return (el.text or "").strip()
    return None


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


_UNITS = {"b": 1, "bytes": 1, "kb": 10**3, "k": 2**10, "kib": 2**10, "mb": 10**6,
          "m": 2**20, "mib": 2**20, "gb": 10**9, "g": 2**30, "gib": 2**30,
          "tb": 10**12, "t": 2**40, "tib": 2**40}


def _mib(el: ElementTree.Element | None) -> int:
    if el is None or not (el.text or "").strip():
        return 0
    factor = _UNITS.get((el.get("unit") or "KiB").lower(), 2**10)
    return int(el.text or 0) * factor // 2**20


@dataclass(frozen=True)
class NetworkState:
    name: str
    exists: bool = False
    active: bool = False
    key: str | None = None
    uuid: str = ""


@dataclass(frozen=True)
class DomainState:
    """A domain as its XML describes it (live or desired)."""

    name: str
    exists: bool = False
    active: bool = False
    key: str | None = None
    uuid: str = ""
    accel: str = ""
    memory_mib: int = 0
    cpus: int = 0
    disks: tuple[str, ...] = ()
    macs: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()


def parse_domain(xml: str, *, exists: bool = True, active: bool = False) -> DomainState:
    root = ElementTree.fromstring(xml)
    devices = root.find("devices")
    devs = devices if devices is not None else ElementTree.Element("devices")
    disks = tuple(s.get("file") or s.get("dev") or s.get("name") or ""
                  for s in devs.findall("disk/source"))
    return DomainState(
        name=root.findtext("name", ""), exists=exists, active=active, key=node_key(xml),
        uuid=root.findtext("uuid", ""),
        accel=root.get("type", ""), memory_mib=_mib(root.find("memory")),
        cpus=int(root.findtext("vcpu", "0") or 0), disks=disks,
        macs=tuple(m.get("address", "").lower() for m in devs.findall("interface/mac")),
        networks=tuple(s.get("network", "") for s in devs.findall("interface/source")))


def _lookup(fn: Callable[[str], Any], name: str, missing_code: int) -> Any | None:
    import libvirt

    try:
        return fn(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == missing_code:
            return None
        raise _libvirt_error(f"look up {name}", exc) from exc


def _libvirt_error(what: str, exc: Exception) -> AivmError:
    return AivmError(f"libvirt could not {what}: {exc}", reason="libvirt-error",
                     hint="see the libvirtd log; `aivm status --detail` shows live state")


def lookup_network(conn: Conn, name: str) -> Any | None:
    import libvirt

    return _lookup(conn.networkLookupByName, name, libvirt.VIR_ERR_NO_NETWORK)


def lookup_domain(conn: Conn, name: str) -> Any | None:
    import libvirt

    return _lookup(conn.lookupByName, name, libvirt.VIR_ERR_NO_DOMAIN)


def read_network(conn: Conn, name: str) -> NetworkState:
    net = lookup_network(conn, name)
    if net is None:
        return NetworkState(name)
    xml = net.XMLDesc(0)
    uuid = ElementTree.fromstring(xml).findtext("uuid", "")
    return NetworkState(name, True, bool(net.isActive()), node_key(xml), uuid)


def read_domain(conn: Conn, name: str, *, running: bool = False) -> DomainState:
    """The persistent definition (or, with `running`, the config the guest runs with)."""
    dom = lookup_domain(conn, name)
    if dom is None:
        return DomainState(name)
    import libvirt

    active = bool(dom.isActive())
    flags = 0 if running and active else libvirt.VIR_DOMAIN_XML_INACTIVE
    return parse_domain(dom.XMLDesc(flags), exists=True, active=active)


@dataclass(frozen=True)
class Lease:
    ip: str
    mac: str
    hostname: str = ""
    expiry: int = 0


def leases(net: Any, mac: str) -> tuple[Lease, ...]:
    """DHCP leases of `mac` on a virNetwork (`DHCPLeases(mac)`), IPv4 first."""
    import libvirt

    try:
        raw = net.DHCPLeases(mac) or []
    except libvirt.libvirtError as exc:
        raise _libvirt_error(f"read DHCP leases of {mac}", exc) from exc
    found = [Lease(str(r.get("ipaddr", "")), str(r.get("mac", "")).lower(),
                   str(r.get("hostname") or ""), int(r.get("expirytime") or 0))
             for r in raw if r.get("ipaddr")]
    return tuple(sorted(found, key=lambda lease: (":" in lease.ip, -lease.expiry)))


def lease_ip(conn: Conn, network: str, mac: str) -> str | None:
    """The guest's current IPv4 address from the network's leases, or None."""
    net = lookup_network(conn, network)
    found = [lease for lease in leases(net, mac) if ":" not in lease.ip] if net else []
    return found[0].ip if found else None


# ---- drift ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Drift:
    what: str
    live: str
    desired: str
    restart: bool

    @property
    def line(self) -> str:
        when = "restart required" if self.restart else "applies at next start"
        return f"{self.what}: live {self.live}, desired {self.desired} ({when})"


def drift(desired: DomainState, live: DomainState) -> tuple[Drift, ...]:
    """One entry per difference that matters to the user; running guests need a restart."""
    restart = live.active
    fields = (("memory", f"{live.memory_mib} MiB", f"{desired.memory_mib} MiB"),
              ("cpus", str(live.cpus), str(desired.cpus)),
              ("accel", live.accel, desired.accel),
              ("disks", ", ".join(live.disks), ", ".join(desired.disks)),
              ("network", ", ".join(live.networks), ", ".join(desired.networks)),
              ("mac", ", ".join(live.macs), ", ".join(desired.macs)))
    out = tuple(Drift(what, a, b, restart) for what, a, b in fields if a != b)
    if not out and live.key != desired.key:
        out = (Drift("definition", f"key {_short(live.key)}", f"key {_short(desired.key)}",
                     restart),)
    return out


def _short(key: str | None) -> str:
    return key[:12] if key else "none"


# ---- actions --------------------------------------------------------------------------------

def _api(conn: Conn, meaning: str, call: str, fn: Callable[[], object]) -> Action:
    def guarded() -> None:
        import libvirt

        try:
            fn()
        except libvirt.libvirtError as exc:
            raise _libvirt_error(meaning, exc) from exc

    return Action.api(meaning, f"libvirt[{uri_of(conn)}] {call}", guarded)


def with_uuid(xml: str, uuid: str) -> str:
    """`xml` keeping an existing object's UUID: libvirt refuses a redefinition under a new one."""
    if not uuid or ElementTree.fromstring(xml).find("uuid") is not None:
        return xml
    return xml.replace("</name>", f"</name>\n  <uuid>{uuid}</uuid>", 1)


def _define(conn: Conn, what: str, method: str, xml: str, source: str, uuid: str) -> Action:
    name = ElementTree.fromstring(xml).findtext("name", "")
    full = with_uuid(xml, uuid)
    text = f"{method}(<{source}>{f' with uuid {uuid}' if uuid else ''})"
    return _api(conn, f"define {what} {name} from {source}", text,
                lambda: getattr(conn, method)(full))


def define_network(conn: Conn, xml: str, source: str, uuid: str = "") -> Action:
    return _define(conn, "network", "networkDefineXML", xml, source, uuid)


def start_network(conn: Conn, name: str) -> Action:
    def start() -> None:
        net = conn.networkLookupByName(name)
        net.create()
        net.setAutostart(1)

    return _api(conn, f"start network {name} (and autostart it)",
                f"networkLookupByName({name!r}).create(); .setAutostart(1)", start)


def destroy_network(conn: Conn, name: str) -> Action:
    return _api(conn, f"stop network {name}", f"networkLookupByName({name!r}).destroy()",
                lambda: conn.networkLookupByName(name).destroy())


def undefine_network(conn: Conn, name: str) -> Action:
    return _api(conn, f"remove the definition of network {name}",
                f"networkLookupByName({name!r}).undefine()",
                lambda: conn.networkLookupByName(name).undefine())


def define_domain(conn: Conn, xml: str, source: str, uuid: str = "") -> Action:
    return _define(conn, "VM", "defineXML", xml, source, uuid)


def start_domain(conn: Conn, name: str) -> Action:
    return _api(conn, f"start VM {name}", f"lookupByName({name!r}).create()",
                lambda: conn.lookupByName(name).create())


def destroy_domain(conn: Conn, name: str) -> Action:
    return _api(conn, f"power off VM {name} at once", f"lookupByName({name!r}).destroy()",
                lambda: conn.lookupByName(name).destroy())


def shutdown_domain(conn: Conn, name: str, timeout: float = 60.0,
                    sleep: Callable[[float], None] = time.sleep) -> Action:
    """ACPI shutdown; power off when the guest is still running after `timeout` seconds."""
    return _api(conn, f"shut VM {name} down (power off after {timeout:g} s)",
                f"lookupByName({name!r}).shutdown(); after {timeout:g} s: .destroy() if active",
                lambda: stop_domain(conn.lookupByName(name), timeout, sleep))


def stop_domain(dom: Any, timeout: float, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Stop a running domain; True when it shut down by itself, False when forced off."""
    if not dom.isActive():
        return True
    dom.shutdown()
    waited = 0.0
    while waited < timeout:
        if not dom.isActive():
            return True
        sleep(0.5)
        waited += 0.5
    if dom.isActive():
        dom.destroy()
    return False


UNDEFINE_FLAGS = ("MANAGED_SAVE", "SNAPSHOTS_METADATA", "CHECKPOINTS_METADATA", "NVRAM")


def undefine_domain(conn: Conn, name: str) -> Action:
    names = " | ".join(f"VIR_DOMAIN_UNDEFINE_{f}" for f in UNDEFINE_FLAGS)
    return _api(conn, f"remove the definition of VM {name} (saved state, snapshots, nvram)",
                f"lookupByName({name!r}).undefineFlags({names})",
                lambda: _undefine(conn.lookupByName(name)))


def _undefine(dom: Any) -> None:
    import libvirt

    every = 0
    for flag in UNDEFINE_FLAGS:
        every |= getattr(libvirt, f"VIR_DOMAIN_UNDEFINE_{flag}")
    try:
        dom.undefineFlags(every)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
            raise
        # Drivers without checkpoints or nvram (the test driver) reject those flags.
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                          | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


# ---- plans ----------------------------------------------------------------------------------

def desired_key(xml: str, source: str) -> str:
    key = node_key(xml)
    if not key:
        raise AivmError(f"{source} carries no aivm node key in <metadata>",
                        hint="rebuild it with `aivm build`", reason="no-node-key")
    return key


def _refuse_foreign(what: str, name: str, exists: bool, key: str | None) -> None:
    if exists and key is None:
        raise AivmError(f"{what} {name} exists in libvirt but was not defined by aivm",
                        hint=f"choose another name in the config, or remove that {what} yourself",
                        reason="not-aivm-owned")


def network_plan(conn: Conn, xml: str, source: str) -> Plan:
    """Steps that make the live network match `xml` (from store path `source`)."""
    key = desired_key(xml, source)
    name = ElementTree.fromstring(xml).findtext("name", "")
    live = read_network(conn, name)
    _refuse_foreign("network", name, live.exists, live.key)
    if live.exists and live.key == key:
        if live.active:
            return plans.of(f"network {name}: up to date")
        return plans.of(Step(f"Start network {name}", f"network {name} is defined but stopped",
                             (start_network(conn, name),)))
    if not live.exists:
        return plans.of(Step(f"Define and start network {name}", f"network {name} does not exist",
                             (define_network(conn, xml, source), start_network(conn, name))))
    why = f"network {name} was defined from another build (key {_short(live.key)})"
    stop = (destroy_network(conn, name),) if live.active else ()
    if live.active:
        why += "; running VMs on it lose their link until restarted"
    return plans.of(Step(f"Redefine network {name}", why,
                         stop + (define_network(conn, xml, source, live.uuid),
                                 start_network(conn, name))))


def domain_plan(conn: Conn, xml: str, source: str, *, restart: bool = True,
                start: Step | None = None, uuid: str = "") -> Plan:
    """Steps that make the live domain match `xml`: define, start, or redefine (+ restart).
    `start`: the step that starts it (a booted-state restore), else a plain start; `uuid`:
    the one a new definition takes."""
    desired = parse_domain(xml, exists=False)
    desired_key(xml, source)
    live = read_domain(conn, desired.name)
    name = desired.name
    _refuse_foreign("VM", name, live.exists, live.key)
    start = start or Step(f"Start VM {name}", f"VM {name} is not running",
                          (start_domain(conn, name),))
    if not live.exists:
        return plans.of(Step(f"Define VM {name}", f"VM {name} does not exist",
                             (define_domain(conn, xml, source, uuid),)), start)
    if live.key == desired.key:
        return plans.of(f"VM {name}: up to date" if live.active else None,
                        None if live.active else start)
    changes = drift(desired, live)
    redefine = Step(f"Redefine VM {name}", "; ".join(d.line for d in changes),
                    (define_domain(conn, xml, source, live.uuid),))
    if not live.active:
        return plans.of(redefine, start)
    bounce = Step(f"Restart VM {name}", "the new definition applies only after a restart",
                  (shutdown_domain(conn, name), start_domain(conn, name)))
    return plans.of(redefine, bounce if restart else f"VM {name}: restart to apply changes")


def remove_domain_plan(conn: Conn, name: str, timeout: float = 60.0) -> Plan:
    """Stop (ACPI, then force) and undefine the domain; the disk is disk.py's business."""
    live = read_domain(conn, name)
    if not live.exists:
        return plans.of(f"VM {name}: not defined")
    stop = (shutdown_domain(conn, name, timeout),) if live.active else ()
    return plans.of(Step(f"Remove VM {name}", f"destroying VM {name}",
                         stop + (undefine_domain(conn, name),)))


def remove_network_plan(conn: Conn, name: str) -> Plan:
    live = read_network(conn, name)
    if not live.exists:
        return plans.of(f"network {name}: not defined")
    stop = (destroy_network(conn, name),) if live.active else ()
    return plans.of(Step(f"Remove network {name}", f"no VM uses network {name} any more",
                         stop + (undefine_network(conn, name),)))


def stop_plan(conn: Conn, name: str, timeout: float = 60.0) -> Plan:
    """`aivm down`: ACPI shutdown, forced off after `timeout`."""
    live = read_domain(conn, name)
    if not live.active:
        return plans.of(f"VM {name}: not running")
    return plans.of(Step(f"Shut down VM {name}", "asked to stop it",
                         (shutdown_domain(conn, name, timeout),)))

