"""virtiofs filesystem devices on a domain, attached and detached with libvirt-python.

A running domain gets the device live *and* in its persistent definition
(`VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG`), a stopped one in its
definition only. libvirt starts virtiofsd itself; the domain XML already has
the shared memfd backing virtiofs needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from aivm.activate import live
from aivm.activate.plan import Action, Step
from aivm.errors import AivmError


@dataclass(frozen=True)
class Device:
    source: str
    tag: str

    @property
    def xml(self) -> str:
        return ("<filesystem type='mount' accessmode='passthrough'>"
                "<driver type='virtiofs'/>"
                f"<source dir={quoteattr(self.source)}/><target dir={quoteattr(self.tag)}/>"
                "</filesystem>")


def devices(xml: str) -> dict[str, Device]:
    """The virtiofs devices of a domain XML, by tag."""
    root = ElementTree.fromstring(xml)
    out = {}
    for fs in root.findall("devices/filesystem"):
        driver, src, tgt = fs.find("driver"), fs.find("source"), fs.find("target")
        if driver is None or driver.get("type") != "virtiofs" or src is None or tgt is None:
            continue
        out[tgt.get("dir", "")] = Device(src.get("dir", ""), tgt.get("dir", ""))
    return out


@dataclass(frozen=True)
class Presence:
    active: bool
    live: bool      # in the running guest
    config: bool    # in the persistent definition

    @property
    def complete(self) -> bool:
        return self.config and (self.live or not self.active)


def presence(conn: live.Conn, vm: str, tag: str) -> Presence:
    import libvirt

    dom = live.lookup_domain(conn, vm)
    if dom is None:
        raise AivmError(f"VM {vm} is not defined", hint=f"create it: aivm up {vm}",
                        reason="vm-missing")
    active = bool(dom.isActive())
    in_config = tag in devices(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    in_live = active and tag in devices(dom.XMLDesc(0))
    return Presence(active, in_live, in_config)


def _flags(live_too: bool, config: bool) -> int:
    import libvirt

    return ((libvirt.VIR_DOMAIN_AFFECT_LIVE if live_too else 0)
            | (libvirt.VIR_DOMAIN_AFFECT_CONFIG if config else 0))


def _where(live_too: bool, config: bool) -> str:
    return " | ".join(n for n, on in (("VIR_DOMAIN_AFFECT_LIVE", live_too),
                                      ("VIR_DOMAIN_AFFECT_CONFIG", config)) if on)


def can_hotplug(conn: live.Conn, vm: str) -> bool:
    """Whether libvirt can add a virtiofs device to the running VM without crashing.

    libvirt 9.0 dereferences the domain's cgroup when it starts virtiofsd for a
    hot-plugged device; a daemon without cgroups (containers, `ip netns exec`,
    which remounts /sys) segfaults there. Measured: `End of file while reading
    data: Input/output error` and libvirtd gone. Probe the cgroup first.
    """
    import libvirt

    dom = live.lookup_domain(conn, vm)
    if dom is None or not dom.isActive():
        return False
    try:
        dom.memoryParameters(0)
    except libvirt.libvirtError as exc:
        return "cgroup" not in str(exc)
    return True


def attach_step(conn: live.Conn, vm: str, dev: Device, why: str,
                restart: tuple[Action, ...] = ()) -> Step | None:
    """Add `dev` live (and to the definition); with `restart` actions, when the VM runs and
    cannot hot-plug, add it to the definition and run them (restart, wait for ssh)."""
    have = presence(conn, vm, dev.tag)
    if have.complete:
        return None
    live_too, config = have.active and not have.live, not have.config
    if live_too and not can_hotplug(conn, vm):
        if not restart:
            return None if not config else Step(
                f"Add the virtiofs device {dev.tag} to the definition of VM {vm}",
                f"{why}; libvirt here cannot hot-plug virtiofs: it starts with the VM",
                (_attach_action(conn, vm, dev, False, True),))
        if not config:
            return Step(f"Restart VM {vm} to start its virtiofs device {dev.tag}",
                        "the device is defined but not running; libvirt here cannot hot-plug "
                        "it (no cgroups)", restart)
        action = _attach_action(conn, vm, dev, False, True)
        return Step(f"Add the virtiofs device {dev.tag} to VM {vm} and restart it",
                    f"{why}; libvirt here cannot hot-plug virtiofs (its daemon has no cgroups), "
                    "so the device starts with the VM", (action, *restart))
    return Step(f"Add the virtiofs device {dev.tag} to VM {vm}", why,
                (_attach_action(conn, vm, dev, live_too, config),))


def _attach_action(conn: live.Conn, vm: str, dev: Device, live_too: bool,
                   config: bool) -> Action:
    where = "the running VM and its definition" if live_too and config else (
        "the running VM" if live_too else "the VM's definition")
    return Action.api(f"add virtiofs export {dev.source} (tag {dev.tag}) to {where}",
                      f"libvirt[{live.uri_of(conn)}] lookupByName({vm!r}).attachDeviceFlags("
                      f"{dev.xml}, {_where(live_too, config)})",
                      lambda: _attach(conn, vm, dev, _flags(live_too, config)))


def detach_step(conn: live.Conn, vm: str, dev: Device) -> Step | None:
    """Remove `dev`; a running VM that cannot hot-unplug keeps it until its next restart."""
    have = presence(conn, vm, dev.tag)
    if have.live and not can_hotplug(conn, vm):
        have = Presence(have.active, False, have.config)
    if not (have.live or have.config):
        return None
    action = Action.api(f"remove virtiofs export {dev.source} (tag {dev.tag})",
                        f"libvirt[{live.uri_of(conn)}] lookupByName({vm!r}).detachDeviceFlags("
                        f"{dev.xml}, {_where(have.live, have.config)})",
                        lambda: _detach(conn, vm, dev, _flags(have.live, have.config)))
    return Step(f"Remove the virtiofs device {dev.tag} from VM {vm}",
                "the folder is no longer shared", (action,))


def _attach(conn: live.Conn, vm: str, dev: Device, flags: int) -> None:
    import libvirt

    try:
        conn.lookupByName(vm).attachDeviceFlags(dev.xml, flags)
    except libvirt.libvirtError as exc:
        raise attach_error(vm, dev, str(exc)) from exc


def _detach(conn: live.Conn, vm: str, dev: Device, flags: int) -> None:
    import libvirt

    try:
        conn.lookupByName(vm).detachDeviceFlags(dev.xml, flags)
    except libvirt.libvirtError as exc:
        raise AivmError(f"libvirt could not remove virtiofs device {dev.tag} from {vm}: {exc}",
                        hint=f"shut the VM down (aivm down {vm}) and detach again",
                        reason="virtiofs-detach-failed") from exc


def attach_error(vm: str, dev: Device, message: str) -> AivmError:
    if "No more available PCI slots" in message:
        return AivmError(
            f"VM {vm} has no free PCI slot for another virtiofs device: {message}",
            hint="each `shared` folder takes one device slot; use --mode shared-root (one "
                 "device for all folders) or --mode git, or detach unused shared folders",
            reason="pci-slots-exhausted")
    return AivmError(f"libvirt could not add virtiofs export {dev.source} to {vm}: {message}",
                     hint="check that virtiofsd is installed (`aivm host doctor`); a running "
                          "VM may need a restart (aivm restart) to take the device",
                     reason="virtiofs-attach-failed")

