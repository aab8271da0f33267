"""`aivm up`: build a VM's graph, then make libvirt and nft match the store.

The plan, in order: let the hypervisor read the store (only when it cannot),
the network, its firewall, the VM's writable disk, the domain, and the gc
roots of the VM's store entries. Each part compares the live state with
the desired store path and contributes steps only when they differ, so a
second `aivm up` is "nothing to do".
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aivm import paths
from aivm.activate import disk, firewall, live
from aivm.activate import plan as plans
from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.config import to_graph as names
from aivm.config.schema import Attachment, Config, Network, Vm
from aivm.errors import AivmError
from aivm.graph.scheduler import NodeState
from aivm.graph.store import Root, Store
from aivm.guest import ssh
from aivm.recipes.domain_xml import DomainXml
from aivm.recipes.network_xml import NetworkXml
from aivm.recipes.nft_ruleset import NftRuleset, table_name
from aivm.recipes.overlay import Overlay


@dataclass(frozen=True)
class Artifacts:
    """A VM's built store entries, by role."""

    vm: Vm
    network: Network
    states: Mapping[str, NodeState]
    nft: firewall.Live = firewall.Live()  # the firewall probe's answer (`firewall_probe`)

    def entry(self, node: str) -> Path:
        return self.states[node].path

    @property
    def domain_xml(self) -> Path:
        return self.entry(names.domain_name(self.vm.name)) / DomainXml.OUTPUT

    def domain_text(self) -> str:
        """The domain XML as libvirt gets it: its store references made paths in this store."""
        from aivm.recipes.domain_xml import read_resolved

        return read_resolved(self.domain_xml)

    @property
    def network_xml(self) -> Path:
        return self.entry(names.network_name(self.network.name)) / NetworkXml.OUTPUT

    @property
    def ruleset(self) -> Path | None:
        node = names.nft_name(self.network.name)
        return self.entry(node) / NftRuleset.OUTPUT if node in self.states else None

    @property
    def overlay(self) -> Path:
        return self.entry(names.overlay_name(self.vm.name)) / Overlay.OUTPUT

    def hypervisor_files(self) -> list[Path]:
        """Every store file QEMU opens: the overlay, the layers and image under it (provision
        nodes sit between), the seed, kernel and initrd."""
        disks = ("overlay", "seed-iso", "provision", "debootstrap", "debootstrap-disk", "fetch",
                 "local-image")
        out = []
        for state in sorted(self.states.values(), key=lambda s: s.name):
            if state.kind in disks:
                out += sorted(p for p in state.path.iterdir() if p.name != "manifest.json")
        return out


DISK_BACKING = "disk-backing"  # the root of the store image the VM's disk really sits on


def root_name(vm: str, node: str) -> Root:
    """The gc root by which VM `vm` keeps node `node`'s entry (its own folder of roots)."""
    return Root(vm, node)


def plan_up(conn: live.Conn, store: Store, art: Artifacts, *, recreate: bool = False,
            attachments: tuple[Attachment, ...] = (), booted: bool = False,
            notify: Callable[[str], None] = print) -> Plan:
    """`attachments`: the config's; their host side is restored before the VM starts.
    `booted`: start from a saved booted state when there is one (aivm/activate/snapshot.py).
    Refused first when the network's bridge or subnet is taken on this host (hostnet.py)."""
    from aivm.activate import hostnet, snapshot
    from aivm.guest import attach

    hostnet.check(conn, art.network)
    name = art.vm.name
    domain_xml = art.domain_text()
    current = live.read_domain(conn, name)
    starting = recreate or not current.active
    choice = snapshot.choose(conn, store, art.vm, domain_xml, enabled=booted) \
        if booted and starting else None
    start = None if choice is None else snapshot.start_step(snapshot.Context(
        conn, store, art.vm, art.overlay, domain_xml, attachments, notify), choice)
    return plans.of(
        access_step(art),
        network_part(conn, art),
        firewall_plan(art),
        _stop_for_recreate(conn, name) if recreate and current.active else None,
        disk.disk_plan(name, art.overlay, recreate=recreate),
        attach.host_restore_plan(attachments, name, store=store.root,
                                 export=_has_export(domain_xml) and live.runs_qemu_here(conn)),
        _domain(conn, art, domain_xml, current, recreate, start,
                snapshot.saved_uuid(choice.entry) if choice else ""),
        roots_step(store, art),
        snapshot.root_step(store, name, choice.entry) if choice and choice.entry else None,
        None if recreate else backing_root_step(store, art, disk.disk_path(name)),
    )


def check_host(conn: live.Conn, cfg: Config, vm: Vm) -> None:
    """Refuse early (before the build) when the VM's network's bridge or subnet is taken on
    this host (aivm/activate/hostnet.py); plan_up checks again."""
    from aivm.activate import hostnet

    network = cfg.network(vm.network)
    if network is not None:
        hostnet.check(conn, network)


def network_part(conn: live.Conn, art: Artifacts) -> Plan:
    """The network and its egress policy (aivm/activate/egress.py). The policy goes first:
    the servers-file must exist before the network's dnsmasq starts, and a dnsmasq that
    keeps running rereads it on SIGHUP instead of the network restarting."""
    from aivm.activate import egress

    net = live.network_plan(conn, art.network_xml.read_text(), str(art.network_xml.parent))
    return plans.of(egress.plan(art.network.name, art.states, reload_dns=net.is_empty), net)


def _has_export(domain_xml: str) -> bool:
    from aivm.recipes.base import SHARED_ROOT_TAG

    return f'dir="{SHARED_ROOT_TAG}"' in domain_xml


def access_step(art: Artifacts) -> Step | None:
    user = disk.hypervisor_user()
    return disk.access_step(disk.unreadable(art.hypervisor_files(), user), user)


def firewall_probe(art: Artifacts) -> firewall.Probe:
    """Phase one of the firewall part: the read-only root step whose answer goes into
    `Artifacts.nft` (presence only when the firewall is disabled)."""
    return firewall.network_probe(art.network.name, art.states)


def firewall_plan(art: Artifacts) -> Plan:
    name, table = art.network.name, table_name(art.network.name)
    if art.ruleset is None and art.nft.state is firewall.State.UNCHECKED:
        return plans.of(f"firewall of network {name}: disabled in the config; a table left "
                        f"from before is {firewall.DRY_RUN}")
    if art.ruleset is None:  # remove what is there, or say it is disabled
        return firewall.remove_plan(name, table, art.nft, absent="disabled in the config")
    return firewall.apply_plan(name, table, art.ruleset, art.nft)


def _stop_for_recreate(conn: live.Conn, name: str) -> Step:
    return Step(f"Power off VM {name}", "--recreate replaces its disk; the old one is discarded",
                (live.destroy_domain(conn, name),))


def _domain(conn: live.Conn, art: Artifacts, xml: str, current: live.DomainState,
            recreate: bool, start: Step | None = None, uuid: str = "") -> Plan:
    """`start`: how the VM starts (a booted-state restore), else a plain start; `uuid`: the
    one a new definition takes (a saved state restores only into its own domain's UUID)."""
    source = str(art.domain_xml.parent)
    if recreate and current.active and current.key == live.desired_key(xml, source):
        name = art.vm.name
        return plans.of(start or Step(f"Start VM {name}", "it boots from its fresh disk",
                                      (live.start_domain(conn, name),)))
    return live.domain_plan(conn, xml, source, start=start, uuid=uuid)


def roots_step(store: Store, art: Artifacts) -> Step | None:
    wanted = {root_name(art.vm.name, n): s.path for n, s in art.states.items()}
    have = store.roots()
    if all(have.get(r) == p for r, p in wanted.items()):
        return None
    actions = tuple(Action.api(f"keep {p.name} while VM {art.vm.name} exists",
                               f"symlink {store.root}/roots/{r.relpath} -> {p}",
                               functools.partial(store.add_root, r, p, hold_previous=True))
                    for r, p in sorted(wanted.items()) if have.get(r) != p)
    return Step(f"Record the store entries of VM {art.vm.name} as gc roots",
                "gc must not remove what a defined VM uses", actions,
                Privilege.USER, Effect.USER_WRITE)


def backing_root_step(store: Store, art: Artifacts, disk_file: Path) -> Step | None:
    """Root the store image the VM's disk really sits on, when it is not the desired one.

    A new overlay (another image, another disk size) has a new key; the VM's
    existing disk keeps its old backing file, which gc must not remove while
    the disk exists. Once the disk sits on the desired overlay the extra root
    is dropped.
    """
    root = root_name(art.vm.name, DISK_BACKING)
    backing = disk.backing_of(disk_file) if disk_file.exists() else None
    entry = None if backing is None else store.entry_of(backing.parent)  # by identity
    current = store.roots().get(root)
    if entry is None or entry == store.entry_of(art.overlay.parent):
        if current is None:
            return None
        return Step(f"Release the old image under the disk of VM {art.vm.name}",
                    "the disk no longer sits on it",
                    (Action.api(f"remove the gc root {root}",
                                f"rm {store.root}/roots/{root.relpath}",
                                lambda: store.remove_root(root)),), Privilege.USER,
                    Effect.USER_WRITE)
    if current == entry:
        return None
    return Step(f"Keep the image under the disk of VM {art.vm.name}",
                f"its disk is backed by {entry.name}, which the VM's current build no longer "
                "names; gc must keep it", (Action.api(
                    f"record {entry.name} as a gc root", f"symlink {store.root}/roots/"
                    f"{root.relpath} -> {entry}", lambda: store.add_root(root, entry)),),
                Privilege.USER, Effect.USER_WRITE)


# ---- waiting for the guest ---------------------------------------------------------------

def target(vm: Vm, ip: str) -> ssh.Target:
    from aivm.remote.placement import jump

    return ssh.Target(vm.name, vm.user, ip, Path(vm.ssh_privkey).expanduser(), jump(vm))


def running_target(conn: live.Conn, vm: Vm) -> ssh.Target | None:
    """The ssh target of a running VM (its newest lease, else the recorded IP); None when
    it is not running."""
    from aivm.config.to_graph import mac_address

    if not live.read_domain(conn, vm.name).active:
        return None
    ip = live.lease_ip(conn, vm.network, mac_address(vm.name)) or ssh.recorded_ip(vm.name)
    if not ip:
        raise AivmError(f"VM {vm.name} has no IP address yet",
                        hint=f"wait for it: aivm vm wait_ip {vm.name}", reason="no-ip")
    return target(vm, ip)


def wait_ready(conn: live.Conn, vm: Vm, mac: str, *, timeout: float,
               on_phase: Callable[[str, float], None]) -> ssh.Target:
    """Wait for a DHCP lease, ssh and cloud-init (the newest lease wins); record the IP.
    A guest restored from its booted state moments ago is ready already (snapshot.py)."""
    from aivm.activate import snapshot

    started = time.monotonic()
    fresh = snapshot.take_fresh_restore(conn, vm.name)
    if fresh:
        on_phase("ready", time.monotonic() - started)
        return target(vm, fresh)

    def resolve() -> ssh.Target | None:
        # a restored guest keeps its saved address, leases or not (aivm/activate/snapshot.py)
        ip = snapshot.restored_ip(conn, vm.name) or live.lease_ip(conn, vm.network, mac)
        return target(vm, ip) if ip else None

    tgt = ssh.wait(resolve, deadline=started + timeout,
                   on_tick=lambda phase: on_phase(phase, time.monotonic() - started))
    ssh.record_ip(vm.name, tgt.host, mac)
    on_phase("ready", time.monotonic() - started)
    return tgt


def wait_lease(conn: live.Conn, network: str, mac: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        ip = live.lease_ip(conn, network, mac)
        if ip:
            return ip
        time.sleep(1.0)
    raise AivmError(f"no DHCP lease for {mac} on network {network} in time",
                    hint="the guest may not have booted: see its console log "
                         f"under {paths.state_root()}", reason="lease-timeout")
