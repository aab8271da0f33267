"""Attach and detach plans: host binds, virtiofs devices, guest mounts, git remotes, the record.

`Place` says where the VM is: its libvirt connection and, when it runs, its
ssh target (guest steps need it). A plan for a stopped VM does the host side
and the record; the guest side follows on the next `aivm code .` /
`aivm ssh .`, which restore every saved attachment after boot.

The config record is written last on attach (an attachment is recorded once
it works) and removed last on detach (a failed cleanup keeps the record, and
the error says which step failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aivm.activate import live
from aivm.activate import plan as plans
from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.config import write
from aivm.config.schema import Access, Attachment, AttachMode, Vm
from aivm.errors import AivmError
from aivm.guest import (
    attachments,
    gitmode,
    guestmount,
    hostmount,
    sensitive,
    ssh,
    sshconf,
    vetting,
    virtiofs,
)


@dataclass(frozen=True)
class Place:
    conn: live.Conn
    vm: Vm
    target: ssh.Target | None = None    # None: the VM is not running
    host_home: Path | None = None


def restart_actions(place: Place) -> tuple[Action, ...]:
    """Restart the running VM and wait for its ssh (for devices that cannot be hot-plugged)."""
    if place.target is None:
        return ()
    from aivm.activate import up as activation
    from aivm.config.to_graph import mac_address

    vm, name = place.vm, place.vm.name
    return (live.shutdown_domain(place.conn, name), live.start_domain(place.conn, name),
            Action.api(f"wait until {name} answers ssh again",
                       f"wait for a DHCP lease, ssh {vm.user}@<ip> and cloud-init in {name}",
                       lambda: activation.wait_ready(place.conn, vm, mac_address(name),
                                                     timeout=900, on_phase=lambda _p, _s: None)))


def root_device(vm: str) -> virtiofs.Device:
    return virtiofs.Device(str(hostmount.export_dir(vm)), attachments.ROOT_TAG)


def shared_device(vm: str, att: Attachment) -> virtiofs.Device:
    folder = Path(att.host_path)
    source = hostmount.ro_target(vm, folder) if att.access is Access.RO else folder
    return virtiofs.Device(str(source), attachments.tag(folder))


def attach_plan(place: Place, att: Attachment, config: Path | None) -> Plan:
    """Everything that makes `att` work now; `config` None skips the record (restores)."""
    body = {AttachMode.SHARED_ROOT: _shared_root, AttachMode.SHARED: _shared,
            AttachMode.GIT: _git}[att.mode](place, att)
    return plans.of(body, _record(att, config) if config else None)


def _id(att: Attachment) -> str:
    """The identity the root helper checks; every shared attachment is vetted first."""
    if not att.host_id:
        raise AivmError(f"{att.host_path} was not checked before binding (no host_id)",
                        hint="this is a bug in aivm: please report it", reason="unvetted")
    return att.host_id


def _guest_dst(place: Place, att: Attachment) -> str:
    return attachments.destination(att, place.vm, place.host_home)


def _later(place: Place, att: Attachment) -> str | None:
    if place.target is not None:
        return None
    return (f"VM {place.vm.name} is not running: {att.host_path} is mounted in the guest "
            "when it runs (`aivm ssh .` or `aivm code .` in the folder)")


def _shared_root(place: Place, att: Attachment) -> Plan:
    vm, folder = place.vm.name, Path(att.host_path)
    target = hostmount.bind_target(vm, folder)
    ro = att.access is Access.RO
    dst = _guest_dst(place, att)
    guest = None
    if place.target is not None:
        guest = guestmount.step(
            place.target, f"Mount {dst} in VM {vm}",
            f"{att.host_path} appears at {dst} ({att.access})",
            (("mount the VM's shared-root export", guestmount.mount_root_script()),
             (f"bind {target.name} at {dst}" + (" read-only" if ro else ""),
              guestmount.bind_script(f"{attachments.GUEST_ROOT}/{target.name}", dst, ro=ro))))
    return plans.of(hostmount.prepare_root_step(vm),
                    hostmount.bind_step(vm, folder, target, ro=ro, identity=_id(att)),
                    virtiofs.attach_step(place.conn, vm, root_device(vm),
                                         "one virtiofs device exports every shared-root folder",
                                         restart_actions(place)),
                    guest, _later(place, att))


def _shared(place: Place, att: Attachment) -> Plan:
    vm, folder = place.vm.name, Path(att.host_path)
    dev = shared_device(vm, att)
    ro = att.access is Access.RO
    host = hostmount.bind_step(vm, folder, Path(dev.source), ro=True,
                               identity=_id(att)) if ro else None
    dst = _guest_dst(place, att)
    guest = None
    if place.target is not None:
        guest = guestmount.step(place.target, f"Mount {dst} in VM {vm}",
                                f"{att.host_path} appears at {dst} ({att.access})",
                                ((f"mount virtiofs {dev.tag} at {dst}",
                                  guestmount.virtiofs_script(dev.tag, dst, ro=ro)),))
    return plans.of(host, virtiofs.attach_step(place.conn, vm, dev,
                                               f"shared mode: one device for {att.host_path}",
                                               restart_actions(place)),
                    guest, _later(place, att))


def _git(place: Place, att: Attachment) -> Plan:
    vm, folder = place.vm.name, Path(att.host_path)
    repo = gitmode.inspect(folder, vm)
    dst = _guest_dst(place, att)
    if place.target is None:
        return plans.of(gitmode.remote_step(repo, vm, dst), _later(place, att))
    return plans.of(sshconf.write_step(place.target), sshconf.include_step(),
                    gitmode.guest_step(place.target, dst, repo.branch),
                    gitmode.remote_step(repo, vm, dst),
                    gitmode.fetch_step(repo, vm),
                    gitmode.push_step(repo, vm))


def _record(att: Attachment, config: Path) -> Step:
    what = f"{att.host_path} -> {att.vm} ({att.mode}, {att.access}" + (
        f", at {att.guest_dst})" if att.guest_dst else ")")
    return Step(f"Record the attachment of {att.host_path}",
                "`aivm code .` and `aivm ssh .` restore saved attachments",
                (Action.api(f"save {what} in {config}", f"upsert [[attachments]] in {config}",
                            lambda: write.upsert_attachment(config, att)),),
                Privilege.USER, Effect.USER_WRITE)


# ---- detach --------------------------------------------------------------------------------

def detach_plan(place: Place, att: Attachment, config: Path) -> Plan:
    vm, folder = place.vm.name, Path(att.host_path)
    dst = _guest_dst(place, att)
    guest = None
    if place.target is not None and att.mode is not AttachMode.GIT:
        guest = guestmount.step(place.target, f"Unmount {dst} in VM {vm}",
                                "the folder is being detached",
                                ((f"unmount {dst}", guestmount.unmount_script(dst)),))
    if att.mode is AttachMode.SHARED_ROOT:
        host = plans.of(hostmount.unbind_step(vm, hostmount.bind_target(vm, folder)))
    elif att.mode is AttachMode.SHARED:
        dev = shared_device(vm, att)
        host = plans.of(virtiofs.detach_step(place.conn, vm, dev),
                        hostmount.unbind_step(vm, Path(dev.source))
                        if att.access is Access.RO else None)
    else:
        host = plans.of(gitmode.remove_remote_step(folder, vm),
                        f"the guest clone at {dst} is kept, with any commits made there")
    forget = Step(f"Forget the attachment of {att.host_path}", "it is detached",
                  (Action.api(f"remove {att.host_path} -> {vm} from {config}",
                              f"remove [[attachments]] entry from {config}",
                              lambda: write.remove_attachment(config, att.host_path, vm)),),
                  Privilege.USER, Effect.USER_WRITE)
    return plans.of(guest, host, forget)


def host_restore_plan(atts: tuple[Attachment, ...], vm: str, *, export: bool = False,
                      store: Path | None = None) -> Plan:
    """The host side of `vm`'s saved shared attachments, before the VM starts: the export must
    be a shared mount before virtiofsd starts, and ro exports must exist (after a host reboot).
    `export`: the domain has the shared-root device, so the export is needed without folders.
    `atts`: every saved attachment (all VMs: nesting is checked across them). Each of `vm`'s
    shared ones is vetted again (vetting.vet_saved): a changed, linked, nested or sensitive
    folder refuses the plan; a rw `shared` folder, opened by virtiofsd itself, too."""
    ctx = sensitive.context(store=store)
    mine = [vetting.vet_saved(a, atts, ctx) for a in atts
            if a.vm == vm and a.mode is not AttachMode.GIT]
    roots = [a for a in mine if a.mode is AttachMode.SHARED_ROOT]
    ros = [a for a in mine if a.mode is AttachMode.SHARED and a.access is Access.RO]
    binds = [hostmount.bind_step(vm, Path(a.host_path),
                                 hostmount.bind_target(vm, Path(a.host_path)),
                                 ro=a.access is Access.RO, identity=a.host_id) for a in roots]
    binds += [hostmount.bind_step(vm, Path(a.host_path), Path(shared_device(vm, a).source),
                                  ro=True, identity=a.host_id) for a in ros]
    return plans.of(hostmount.prepare_root_step(vm) if roots or export else None, *binds)


def host_cleanup_plan(vm: str) -> Plan:
    """Unmount every host bind aivm made for `vm` (run before deleting its state dir)."""
    steps = [Step(f"Unmount {m}", f"VM {vm} is going away; the bind points into a user folder",
                  (hostmount.unbind_action(Path(m)),), Privilege.ROOT)
             for m in sorted(hostmount.leftovers(vm), key=len, reverse=True)]
    return plans.of(*steps)
