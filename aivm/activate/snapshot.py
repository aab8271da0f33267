"""Booted-state entries: a VM's disk layer and memory state, saved once it was first ready.

`aivm up` of a VM whose domain is stopped or missing (first boot, `--recreate`,
`destroy` then `up`) takes one of three paths, chosen by `choose`:

- restore: the store has a booted state for this VM's domain key on this QEMU and
  machine type. The VM gets a fresh thin disk on the saved layer, libvirt restores the
  memory state (`restoreFlags`), the virtiofs devices of its definition are hot-plugged
  (QEMU 7.2 cannot save a domain that has one: "non-migratable device: vhost-user-fs"),
  the network gets a DHCP host entry for the saved address (added live: the guest keeps
  its address even after `aivm destroy` removed the network and its leases), and over
  ssh the guest's clock is stepped to the host's, its kernel RNG gets host random bytes
  with credit (RNDADDENTROPY) and a forced reseed (RNDRESEEDCRNG), and its shared
  attachments are mounted again.
- boot and save: no state yet. The domain starts without its virtiofs devices (its
  definition keeps them); once ready, the caller saves it (`save`), commits the saved
  disk layer and memory state as a store entry, and restores it at once.
- boot: disabled in the config, or the connection runs no local QEMU.

Any failure of a restore destroys the half-restored domain, gives the VM a fresh disk
on its overlay and boots it normally, saying why in one line: never a half-restored VM.

The entry's key covers the domain's key (and so its inputs: overlay, seed, network,
image), the QEMU version and the machine type: host facts read from libvirt when a VM
is about to start (never on the no-op path). The memory state file is mode 0400 and is
never pushed anywhere; gc treats the entry like any other (rooted while a VM uses it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from aivm import fsutil, paths
from aivm.activate import disk, live
from aivm.activate.plan import Action, Step
from aivm.config.schema import Attachment, AttachMode, Vm
from aivm.errors import AivmError
from aivm.graph.store import Manifest, Root, Store
from aivm.guest import ssh
from aivm.run import Cmd, run

KIND = "booted-state"
VERSION = 1
STATE_FILE = "memory.state"
LAYER = "disk.qcow2"
DOMAIN_FILE = "domain.xml"
INFO_FILE = "booted.json"
ROOT = "booted-state"  # the gc root name under the VM's roots
SSH_WAIT_S = 120.0


class RestoreFailed(Exception):
    """One line saying why a restore or a save could not be used."""


@dataclass(frozen=True)
class HostFacts:
    """What a memory state is only valid for."""

    qemu: str      # libvirt's hypervisor version (QEMU's, as an integer string)
    machine: str   # the resolved machine type, e.g. pc-q35-7.2

    @classmethod
    def read(cls, conn: live.Conn, accel: str) -> HostFacts:
        caps = conn.getDomainCapabilities(None, "x86_64", "q35", accel or "kvm", 0)
        machine = ElementTree.fromstring(caps).findtext("machine", "q35")
        return cls(str(conn.getVersion()), machine)


@dataclass(frozen=True)
class Choice:
    path: str              # restore | boot-and-save | boot
    why: str
    key: str = ""
    entry: Path | None = None

    @property
    def line(self) -> str:
        return f"{self.path}: {self.why}"


def state_key(domain_key: str, facts: HostFacts) -> str:
    material = {"kind": KIND, "version": VERSION, "domain": domain_key, "qemu": facts.qemu,
                "machine": facts.machine}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def entry_name(vm: str) -> str:
    return f"{vm}.booted-state"


def choose(conn: live.Conn, store: Store, vm: Vm, domain_xml: str, *, enabled: bool) -> Choice:
    """Which path starting `vm` takes (reads host facts from libvirt: call it only when the
    VM is about to start, or for `aivm status --detail`)."""
    if not enabled:
        return Choice("boot", "booted states are off in the config "
                              "([behavior] restore_snapshots = false)")
    if not live.runs_qemu_here(conn):
        return Choice("boot", f"libvirt at {live.uri_of(conn)} runs no local QEMU")
    domain = live.parse_domain(domain_xml, exists=False)
    try:
        facts = HostFacts.read(conn, domain.accel)
    except Exception as exc:  # a driver without domain capabilities
        return Choice("boot", f"cannot read the QEMU version and machine type: {exc}")
    key = state_key(domain.key or "", facts)
    found = store.lookup(key, entry_name(vm.name))
    if found is None:
        return Choice("boot-and-save", f"no booted state yet for QEMU {facts.qemu} "
                                       f"{facts.machine}: the first ready boot is saved", key)
    info = read_info(found)
    return Choice("restore", f"from {found.name} (saved {info.get('saved', '?')})", key, found)


def read_info(entry: Path) -> dict[str, Any]:
    try:
        data = json.loads((entry / INFO_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---- XML ------------------------------------------------------------------------------------

def without_virtiofs(xml: str) -> str:
    """The domain XML minus its virtiofs `<filesystem>` devices (a saveable domain); text
    edited, so that everything else (the metadata's namespaces) stays as libvirt wrote it."""
    return _FILESYSTEM.sub(lambda m: "" if "virtiofs" in m.group(0) else m.group(0), xml)


_FILESYSTEM = re.compile(r"\n?[ \t]*<filesystem\b.*?</filesystem>", re.DOTALL)


def uuid_of(xml: str) -> str:
    return ElementTree.fromstring(xml).findtext("uuid", "")


def saved_uuid(entry: Path | None) -> str:
    """The UUID the saved domain had (a new definition takes it: a restore needs it)."""
    if entry is None:
        return ""
    try:
        return uuid_of((entry / DOMAIN_FILE).read_text())
    except (OSError, ElementTree.ParseError):
        return ""


# ---- plan steps -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    """What a restore needs besides libvirt: the VM, its overlay, its attachments."""

    conn: live.Conn
    store: Store
    vm: Vm
    overlay: Path
    domain_xml: str
    attachments: tuple[Attachment, ...] = ()
    notify: Callable[[str], None] = print


def start_step(ctx: Context, choice: Choice) -> Step:
    """The step that starts the VM along `choice`'s path."""
    name = ctx.vm.name
    if choice.path == "restore" and choice.entry is not None:
        return Step(f"Restore VM {name} from its booted state",
                    f"{choice.entry.name} holds it ready (a normal boot if the restore fails)",
                    (Action.api(f"restore VM {name}: fresh disk on the saved layer, memory "
                                "state, virtiofs devices, clock, RNG reseed, mounts",
                                f"libvirt[{live.uri_of(ctx.conn)}] restoreFlags("
                                f"{choice.entry / STATE_FILE}); attachDeviceFlags(LIVE); "
                                f"ssh {ctx.vm.user}@<saved ip> (date, RNDADDENTROPY)",
                                lambda: restore_or_boot(ctx, choice.entry)),))  # type: ignore[arg-type]
    if choice.path == "boot-and-save":
        return Step(save_title(name), f"VM {name} is not running; its virtiofs devices are "
                    "added after its booted state is saved",
                    (Action.api(f"start VM {name} without its virtiofs devices",
                                f"libvirt[{live.uri_of(ctx.conn)}] lookupByName({name!r})"
                                ".create() with the definition minus <filesystem>",
                                lambda: start_without_virtiofs(ctx)),))
    return Step(f"Start VM {name}", f"VM {name} is not running",
                (live.start_domain(ctx.conn, name),))


def save_title(vm: str) -> str:
    """The title of the start step after which `aivm up` saves the booted state."""
    return f"Start VM {vm}, then save its booted state"


def start_without_virtiofs(ctx: Context) -> None:
    """Start from the definition minus virtiofs devices, then put the full definition back
    (it applies from the next start; the devices are hot-plugged after the save)."""
    dom = ctx.conn.lookupByName(ctx.vm.name)
    import libvirt

    full = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    lean = without_virtiofs(full)
    if lean == full:
        dom.create()
        return
    ctx.conn.defineXML(lean)
    try:
        dom.create()
    finally:
        ctx.conn.defineXML(full)


# ---- restore --------------------------------------------------------------------------------

def restore_or_boot(ctx: Context, entry: Path) -> None:
    """Restore; on any failure undo it and boot normally, saying why in one line."""
    try:
        restore(ctx, entry)
    except (RestoreFailed, AivmError, OSError) as exc:
        ctx.notify(f"VM {ctx.vm.name}: booted state not used ({_one_line(exc)}); booting "
                   "normally")
        boot_fresh(ctx)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def boot_fresh(ctx: Context) -> None:
    """Undo a half-done restore: power off, a fresh disk on the overlay, a normal start."""
    dom = live.lookup_domain(ctx.conn, ctx.vm.name)
    if dom is not None and dom.isActive():
        dom.destroy()
    _new_disk(ctx.vm.name, ctx.overlay)
    with contextlib.suppress(FileNotFoundError):
        _restored_file(ctx.vm.name).unlink()
    ctx.conn.lookupByName(ctx.vm.name).create()


def _new_disk(vm: str, backing: Path) -> None:
    dest = disk.disk_path(vm)
    for action in disk.create_actions(backing, dest, root=disk.needs_root(dest),
                                      recreate=dest.exists()):
        action.perform()


def restore(ctx: Context, entry: Path) -> ssh.Target:
    """Restore `entry` into the VM (its domain defined and stopped); raise RestoreFailed."""
    import libvirt

    name = ctx.vm.name
    info = read_info(entry)
    ip = str(info.get("ip") or "")
    if not ip or not (entry / STATE_FILE).is_file():
        raise RestoreFailed(f"{entry.name} is incomplete (no address or no state file)")
    dom = ctx.conn.lookupByName(name)
    if dom.isActive():
        raise RestoreFailed(f"VM {name} is running")
    _new_disk(name, entry / LAYER)
    started = time.monotonic()
    try:
        ctx.conn.restoreFlags(str(entry / STATE_FILE), None, libvirt.VIR_DOMAIN_SAVE_RUNNING)
    except libvirt.libvirtError as exc:
        raise RestoreFailed(f"libvirt could not restore {entry.name}: "
                            f"{exc.get_error_message()}") from exc
    try:
        return _after_restore(ctx, ip, str(info.get("mac") or ""), started)
    except BaseException:
        with contextlib.suppress(Exception):
            if dom.isActive():
                dom.destroy()
        raise


def _after_restore(ctx: Context, ip: str, mac: str, started: float) -> ssh.Target:
    from aivm.activate import up as activation

    name = ctx.vm.name
    hotplug_virtiofs(ctx.conn, name)
    if mac:
        fix_address(ctx.conn, ctx.vm.network, mac, ip, name)
    tgt = activation.target(ctx.vm, ip)
    ssh.forget_host_keys(name)  # the saved guest's keys, not those of the disk it replaces
    phases = {"restore_s": time.monotonic() - started}
    settle(tgt, started + SSH_WAIT_S)  # the first ssh that answers steps the clock and reseeds
    phases["restore_to_ssh_s"] = time.monotonic() - started
    mount_attachments(tgt, ctx.vm, ctx.attachments)
    phases["total_s"] = time.monotonic() - started
    ssh.record_ip(name, ip, mac)
    # a fresh lookup: a virDomain object keeps the ID it had when it was looked up
    _write_restored(name, ctx.conn.lookupByName(name).ID(), ip, phases=phases)
    return tgt


def hotplug_virtiofs(conn: live.Conn, name: str) -> int:
    """Add live every virtiofs device of the definition the running guest lacks."""
    import libvirt

    from aivm.guest import virtiofs

    dom = conn.lookupByName(name)
    wanted = virtiofs.devices(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    have = virtiofs.devices(dom.XMLDesc(0))
    missing = [d for tag, d in sorted(wanted.items()) if tag not in have]
    if missing and not virtiofs.can_hotplug(conn, name):
        raise RestoreFailed("libvirt here cannot hot-plug virtiofs (its daemon has no cgroups)")
    for dev in missing:
        try:
            dom.attachDeviceFlags(dev.xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            raise RestoreFailed(f"virtiofs device {dev.tag} could not be hot-plugged: "
                                f"{exc.get_error_message()}") from exc
    return len(missing)


def fix_address(conn: live.Conn, network: str, mac: str, ip: str, vm: str) -> None:
    """A DHCP host entry mac -> ip on the running network (live only, no restart): the
    restored guest renews the address it has, and nobody else is given it."""
    import libvirt

    net = live.lookup_network(conn, network)
    if net is None:
        raise RestoreFailed(f"network {network} is not defined")
    host = f"<host mac='{mac}' name='{vm}' ip='{ip}'/>"
    section = libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST
    live_flag = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
    with contextlib.suppress(libvirt.libvirtError):  # an entry of an earlier restore
        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, section, -1,
                   f"<host mac='{mac}'/>", live_flag)
    try:
        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, section, -1, host, live_flag)
    except libvirt.libvirtError as exc:
        raise RestoreFailed(f"network {network} refused a DHCP host entry for {ip}: "
                            f"{exc.get_error_message()}") from exc


# Runs as root in the guest, host random bytes (hex) on stdin: step the clock to the host
# epoch in argv[1] (taken when ssh started) plus the age of this ssh connection (from its
# sshd process's start, on the guest's boot clock: the handshake, sudo and Python's start
# take seconds under emulation), add the bytes to the input pool with credit
# (RNDADDENTROPY), force a CRNG reseed (RNDRESEEDCRNG), count reseeds in /run/aivm-reseed.
SETTLE_PY = r"""
import fcntl, os, struct, sys, time
def connection_age():
    pid, start = os.getpid(), None
    while pid > 1:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if int(fields[1]) == 1:
            break
        start, pid = int(fields[19]), int(fields[1])
    if start is None:
        return 0.0
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start / os.sysconf("SC_CLK_TCK")
host = float(sys.argv[1]) + connection_age()
time.clock_settime(time.CLOCK_REALTIME, host)
data = bytes.fromhex(sys.stdin.read().strip())
fd = os.open("/dev/random", os.O_WRONLY)
fcntl.ioctl(fd, 0x40085203, struct.pack("ii", len(data) * 8, len(data)) + data)
fcntl.ioctl(fd, 0x5207)
os.close(fd)
with open("/run/aivm-reseed", "a") as f:
    f.write("%.3f %d\n" % (host, len(data)))
print("settled")
"""


SSH_UNREACHABLE = 255  # ssh's own failure (no connection yet), not the remote command's


def settle(tgt: ssh.Target, deadline: float) -> None:
    """Step the guest clock to the host's and reseed the guest's kernel RNG, retrying until
    ssh answers (the guest's network comes back within seconds of the restore)."""
    import shlex

    while True:
        seed = secrets.token_bytes(64).hex()
        cmd = ssh.command(tgt, ["sudo", "-n", "python3", "-c", shlex.quote(SETTLE_PY),
                                f"{time.time():.3f}"],
                          meaning="step the guest clock, reseed its RNG")
        res = run(dataclasses.replace(cmd, stdin=seed.encode()), check=False, timeout=60)
        if res.ok and "settled" in res.stdout:
            return
        if res.returncode != SSH_UNREACHABLE:
            raise RestoreFailed(f"clock step and RNG reseed failed in the guest: "
                                f"{(res.stderr or res.stdout).strip()[:200]}")
        if time.monotonic() > deadline:
            raise RestoreFailed(f"the restored guest did not answer ssh at {tgt.host} in time")
        time.sleep(0.3)


def mount_attachments(tgt: ssh.Target, vm: Vm, atts: Sequence[Attachment]) -> None:
    """Mount the VM's shared attachments again (the saved guest had none mounted)."""
    from aivm.guest import attachments, guestmount, hostmount

    scripts = []
    for att in atts:
        if att.vm != vm.name or att.mode is AttachMode.GIT:
            continue
        ro, dst = att.access.value == "ro", attachments.destination(att, vm)
        if att.mode is AttachMode.SHARED_ROOT:
            target = hostmount.bind_target(vm.name, Path(att.host_path))
            scripts += [guestmount.mount_root_script(),
                        guestmount.bind_script(f"{attachments.GUEST_ROOT}/{target.name}", dst,
                                               ro=ro)]
        else:
            scripts.append(guestmount.virtiofs_script(attachments.tag(Path(att.host_path)),
                                                      dst, ro=ro))
    if scripts:
        guestmount.as_root(tgt, "".join(scripts), "mount the VM's attachments").perform()


# ---- which guest is restored (address discovery without leases) -----------------------------

def _restored_file(vm: str) -> Path:
    return paths.user_state_dir() / "vms" / f"{vm}.restored.json"


def _write_restored(vm: str, dom_id: int, ip: str, *, fresh: bool = True,
                   phases: dict[str, float] | None = None) -> None:
    path = _restored_file(vm)
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(path, json.dumps({"domain_id": dom_id, "ip": ip, "restored": time.time(),
                                          "fresh": fresh, "phases": phases or {}}))


def last_restore(conn: live.Conn, vm: str) -> dict[str, float]:
    """How long the restore that started the running guest took, by phase (restore_s,
    restore_to_ssh_s, total_s); empty when it was not restored."""
    data = _restored(conn, vm) or {}
    phases = data.get("phases", {})
    return {str(k): float(v) for k, v in phases.items()} if isinstance(phases, dict) else {}


def _restored(conn: live.Conn, vm: str) -> dict[str, Any] | None:
    try:
        data = json.loads(_restored_file(vm).read_text())
    except (OSError, ValueError):
        return None
    dom = live.lookup_domain(conn, vm)
    if dom is None or not dom.isActive() or dom.ID() != data.get("domain_id"):
        return None
    return data if isinstance(data.get("ip"), str) else None


def restored_ip(conn: live.Conn, vm: str) -> str | None:
    """The address of the running guest when it is the one a restore started (the guest
    keeps the address it was saved with, whatever the lease table says)."""
    data = _restored(conn, vm)
    return None if data is None else str(data["ip"])


def take_fresh_restore(conn: live.Conn, vm: str) -> str | None:
    """The address of a guest restored moments ago whose ssh the restore already checked
    (cloud-init was done when it was saved), once: later waits check ssh again."""
    data = _restored(conn, vm)
    if data is None or not data.get("fresh"):
        return None
    _write_restored(vm, int(data["domain_id"]), str(data["ip"]), fresh=False,
                    phases=data.get("phases"))
    return str(data["ip"])


# ---- save -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Saved:
    entry: Path
    save_s: float
    restore_s: float
    size: int


def save_and_restore(ctx: Context, key: str, ip: str, mac: str,
                     domain_entry: Path) -> Saved:
    """Save the ready guest (no virtiofs device live), commit its disk layer and memory
    state as a store entry, restore it at once. Raises RestoreFailed; after a failed save
    the guest still runs, after a failed restore the caller must boot it (`boot_fresh`)."""
    import libvirt

    name = ctx.vm.name
    dom = ctx.conn.lookupByName(name)
    if virtiofs_live(dom):
        raise RestoreFailed("a virtiofs device is live (QEMU cannot save a domain with one)")
    overlay_entry = ctx.overlay.parent
    times: dict[str, float] = {}

    def build(tmp: Path) -> None:
        t0 = time.monotonic()
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE)
        state = tmp / STATE_FILE
        try:
            dom.save(str(state))
        except libvirt.libvirtError as exc:
            raise RestoreFailed(f"libvirt could not save VM {name}: "
                                f"{exc.get_error_message()}") from exc
        times["save"] = time.monotonic() - t0
        os.chmod(state, 0o400)
        _take_disk(disk.disk_path(name), tmp / LAYER, overlay_entry)
        (tmp / DOMAIN_FILE).write_text(xml)
        (tmp / INFO_FILE).write_text(json.dumps({
            "vm": name, "ip": ip, "mac": mac,
            "saved": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2))

    def describe(size: int, seconds: float) -> Manifest:
        return Manifest(key=key, name=entry_name(name), kind=KIND, version=VERSION,
                        params={"vm": name}, inputs={"domain": _key_of(domain_entry)},
                        input_entries={"domain": domain_entry.name,
                                       "overlay": overlay_entry.name},
                        templates={}, files={}, created=datetime.now(UTC).isoformat(
                            timespec="seconds"), size=size, build_seconds=round(seconds, 3))

    entry, _built = ctx.store.commit(key, entry_name(name), build, describe)
    os.chmod(entry / STATE_FILE, 0o400)  # commit makes files 0444; the memory is private
    ctx.store.add_root(Root(name, ROOT), entry)
    # the VM's disk now sits on this entry: say so where `up` looks for the image under the
    # disk (activate/up.py backing_root_step), so the next `up` has nothing to record
    from aivm.activate.up import DISK_BACKING

    ctx.store.add_root(Root(name, DISK_BACKING), entry)
    t1 = time.monotonic()
    try:
        restore(ctx, entry)
    except (AivmError, OSError) as exc:
        raise RestoreFailed(_one_line(exc)) from exc
    return Saved(entry, times.get("save", 0.0), time.monotonic() - t1,
                 (entry / STATE_FILE).stat().st_size)


def virtiofs_live(dom: Any) -> bool:
    from aivm.guest import virtiofs

    return bool(virtiofs.devices(dom.XMLDesc(0)))


def _key_of(entry: Path) -> str:
    try:
        return str(json.loads((entry / "manifest.json").read_text())["key"])
    except (OSError, ValueError, KeyError):
        return ""


def _take_disk(src: Path, dest: Path, overlay_entry: Path) -> None:
    """Move the stopped VM's disk into the entry as a layer backed relatively by the
    overlay entry (the entry stays relocatable with its store)."""
    try:
        os.rename(src, dest)
    except OSError:
        shutil.copy2(src, dest)
        src.unlink()
    backing = os.path.relpath(overlay_entry / disk.DISK_NAME, dest.parent)
    run(Cmd.of("qemu-img", "rebase", "-u", "-F", "qcow2", "-b", backing, str(dest),
               meaning="point the saved layer at the overlay entry by a relative path"))
    os.chmod(dest, 0o444)


# ---- gc roots --------------------------------------------------------------------------------

def root_step(store: Store, vm: str, entry: Path) -> Step | None:
    """Root the booted state a VM's disk sits on (gc keeps it while the VM uses it)."""
    from aivm.activate.plan import Effect, Privilege

    if store.roots().get(Root(vm, ROOT)) == entry:
        return None
    return Step(f"Keep the booted state of VM {vm}", "its disk is restored from it",
                (Action.api(f"record {entry.name} as a gc root",
                            f"symlink {store.root}/roots/{Root(vm, ROOT).relpath} -> {entry}",
                            lambda: store.add_root(Root(vm, ROOT), entry)),),
                Privilege.USER, Effect.USER_WRITE)
