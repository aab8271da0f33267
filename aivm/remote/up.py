"""`aivm up` of a VM on another host: the plan, every step naming the host it runs on.

1. copy the VM's closure into the host's store by key (aivm/cache/ssh.py), only when an
   entry is missing there (a second `up` copies nothing);
2. the network, defined and started through libvirt's remote driver;
3. the firewall: `nft -f` of the store's ruleset on the host (as root through `sudo -n`
   unless the remote user is root), once per ruleset key (a marker in the host's state dir);
4. the VM's state dir and writable disk, a thin qcow2 on the overlay *in the host's store*;
5. the domain, its store references resolved against the host's store root and its
   per-VM paths (disk, console log, shared-root export) moved under the host's state dir;
6. the VM's gc roots in the host's store (`aivm gc --host`).

Steps 1, 3, 4 and 6 are commands over the one multiplexed ssh connection
(aivm/remote/connection.py); 2 and 5 are libvirt API calls on the qemu+ssh connection.
Not done for a remote VM: the egress policy's dnsmasq servers-file, booted-state restore,
the local firewall probe (the marker stands for it), and the host-network overlap check.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from pathlib import Path

from aivm import paths
from aivm.activate import live
from aivm.activate import plan as plans
from aivm.activate.disk import DISK_NAME
from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.activate.up import Artifacts, root_name
from aivm.cache import files
from aivm.cache.backends import Record
from aivm.cache.ssh import SshStore
from aivm.cache.substitute import closure
from aivm.graph.store import Store
from aivm.recipes.domain_xml import resolve
from aivm.remote.address import Remote
from aivm.remote.connection import Connection
from aivm.remote.facts import RemoteFacts, probe


@dataclasses.dataclass(frozen=True)
class Host:
    """A remote host as the plan needs it: its connection, store and facts."""

    remote: Remote
    conn: Connection
    store: SshStore
    facts: RemoteFacts

    @classmethod
    def of(cls, remote: Remote) -> Host:
        conn = Connection.to(remote)
        conn.open()
        return cls(remote, conn, SshStore(f"ssh://{remote.label}", remote, conn), probe(conn))

    def state_dir(self, vm: str) -> str:
        return f"{self.facts.state_dir}/{vm}"

    def entry(self, local_entry: Path) -> str:
        return f"{self.facts.store_root}/{local_entry.name}"


def on(host: Host, part: Plan) -> Plan:
    """`part` with every step's title naming the host it acts on."""
    steps = tuple(dataclasses.replace(s, title=f"{s.title} on {host.remote.label}")
                  for s in part.steps)
    return Plan(steps, tuple(f"{n} (on {host.remote.label})" for n in part.notes))


def plan_remote_up(conn: live.Conn, store: Store, art: Artifacts, host: Host, *,
                   recreate: bool = False) -> Plan:
    xml = remote_domain_xml(art, host)
    return plans.of(
        copy_step(store, art, host),
        on(host, live.network_plan(conn, art.network_xml.read_text(),
                                   host.entry(art.network_xml.parent))),
        firewall_step(art, host),
        on(host, plans.of(Step(f"Power off VM {art.vm.name}", "--recreate replaces its disk",
                               (live.destroy_domain(conn, art.vm.name),))))
        if recreate and live.read_domain(conn, art.vm.name).active else None,
        disk_step(art, host, recreate=recreate),
        on(host, live.domain_plan(conn, xml, host.entry(art.domain_xml.parent))),
        roots_step(art, host),
    )


def missing(store: Store, art: Artifacts, host: Host) -> list[Path]:
    """The entries of the VM's closure the host's store lacks (one read each)."""
    out = []
    for entry in closure(store, [s.path for s in art.states.values()]):
        manifest = store.manifest(entry)
        if host.store.remote_manifest(manifest.key, manifest.name) is None:
            out.append(entry)
    return out


def copy_step(store: Store, art: Artifacts, host: Host) -> Step | None:
    todo = missing(store, art, host)
    if not todo:
        return None
    size = sum(i.size for e in todo for i in files.items(e) if i.type == "file")
    return Step(f"Copy {len(todo)} store entries of VM {art.vm.name} to {host.remote.label}",
                f"the host's store at {host.facts.store_root} lacks them "
                f"({size >> 20} MiB)",
                tuple(Action.api(f"copy {e.name}", f"tar {e} | ssh {host.remote.destination} "
                                 f"(into {host.facts.store_root})", _copier(store, e, host))
                      for e in todo), Privilege.USER, Effect.SYSTEM_WRITE)


def _copier(store: Store, entry: Path, host: Host) -> Callable[[], object]:
    def copy() -> int:
        manifest = store.manifest(entry)
        return host.store.upload(entry, Record(manifest, (), tuple(files.items(entry))),
                                 lambda _n: None)
    return copy


def firewall_step(art: Artifacts, host: Host) -> Step | None:
    if art.ruleset is None:
        return None
    key = art.ruleset.parent.name
    marker = f"{host.facts.state_dir}/.nft-{art.network.name}"
    done = host.conn.run(("sh", "-c", 'cat "$1" 2>/dev/null || true', "sh", marker),
                         "read the firewall marker").stdout.strip()
    if done == key:
        return None
    ruleset = f"{host.entry(art.ruleset.parent)}/{art.ruleset.name}"
    script = (f"nft -f {shlex.quote(ruleset)} && mkdir -p {shlex.quote(host.facts.state_dir)}"
              f" && echo {shlex.quote(key)} > {shlex.quote(marker)}")
    return Step(f"Apply the firewall of network {art.network.name} on {host.remote.label}",
                f"nft table of {key} not applied there yet",
                (Action.command(host.conn.script(script, "apply the nft ruleset", root=True)),),
                Privilege.ROOT, Effect.SYSTEM_WRITE)


def disk_step(art: Artifacts, host: Host, *, recreate: bool = False) -> Step | None:
    vm_dir = host.state_dir(art.vm.name)
    disk = f"{vm_dir}/{DISK_NAME}"
    backing = f"{host.entry(art.overlay.parent)}/{art.overlay.name}"
    exists = host.conn.run(("sh", "-c", 'test -f "$1" && echo yes || true', "sh", disk),
                           "look for the VM's disk").stdout.strip() == "yes"
    if exists and not recreate:
        return None
    q = shlex.quote
    script = (f"{'rm -f -- ' + q(disk) + ' && ' if recreate else ''}"
              f"mkdir -p -- {q(vm_dir)} {q(vm_dir + '/shared-root')} && "
              f"qemu-img create -q -f qcow2 -F qcow2 -b {q(backing)} {q(disk)}")
    return Step(f"Create the writable disk of VM {art.vm.name} on {host.remote.label}",
                f"a thin qcow2 under {vm_dir}, backed by the host's store image",
                (Action.command(host.conn.script(script, "create the VM's disk",
                                                 root=host.facts.uid != 0)),),
                Privilege.ROOT if host.facts.uid != 0 else Privilege.USER,
                Effect.SYSTEM_WRITE)


def remote_domain_xml(art: Artifacts, host: Host) -> str:
    """The domain XML for the host: store references under its store root, this machine's
    per-VM state dir replaced by the host's (the graph renders per-VM paths for here)."""
    xml = resolve(art.domain_xml.read_text(), Path(host.facts.store_root))
    here = str(paths.vm_state_dir(art.vm.name))
    return xml.replace(f"{here}/", f"{host.state_dir(art.vm.name)}/")


def roots_step(art: Artifacts, host: Host) -> Step | None:
    links = []
    for node, state in sorted(art.states.items()):
        rel = root_name(art.vm.name, node).relpath
        depth = rel.count("/") + 1  # roots/<rel>: up to the store root
        links.append((rel, "../" * depth + state.path.name))
    root = host.facts.store_root
    check = " && ".join(f'[ "$(readlink {shlex.quote(f"{root}/roots/{r}")})" = '
                        f'{shlex.quote(t)} ]' for r, t in links)
    if host.conn.run(("sh", "-c", f"{check} && echo ok || true"),
                     "read the VM's gc roots").stdout.strip() == "ok":
        return None
    script = " && ".join(
        f"mkdir -p {shlex.quote(str(Path(root, 'roots', r).parent))} && "
        f"ln -sfn {shlex.quote(t)} {shlex.quote(f'{root}/roots/{r}')}" for r, t in links)
    return Step(f"Record the store entries of VM {art.vm.name} as gc roots on "
                f"{host.remote.label}", "the host's gc must not remove what the VM uses",
                (Action.command(host.conn.script(script, "write gc roots")),),
                Privilege.USER, Effect.USER_WRITE)


def destroy_plan(conn: live.Conn, cfg_vms: list[str], vm: str, network: str,
                 host: Host) -> Plan:
    """`aivm destroy` of a VM on `host`: the domain, its state dir and gc roots there, and
    the network with its nft table when no other VM of the config uses it there."""
    from aivm.graph.store import escape
    from aivm.recipes.nft_ruleset import table_name

    q = shlex.quote
    state, roots = host.state_dir(vm), f"{host.facts.store_root}/roots/vms/{escape(vm)}"
    others = [o for o in cfg_vms if o != vm and live.read_domain(conn, o).exists]
    cleanup = Step(f"Remove the disk and gc roots of VM {vm} on {host.remote.label}",
                   "the guest's changes go with the VM; the host's store keeps the image",
                   (Action.command(host.conn.script(f"rm -rf -- {q(state)} {q(roots)}",
                                                    "remove the VM's state and roots",
                                                    root=host.facts.uid != 0)),),
                   Privilege.ROOT if host.facts.uid != 0 else Privilege.USER)
    marker = f"{host.facts.state_dir}/.nft-{network}"
    table = (f"nft delete table inet {q(table_name(network))} 2>/dev/null; "
             f"rm -f -- {q(marker)}")
    net = None if others else plans.of(
        Step(f"Remove the firewall of network {network} on {host.remote.label}",
             f"no VM uses network {network} any more",
             (Action.command(host.conn.script(table, "delete the nft table", root=True)),),
             Privilege.ROOT),
        on(host, live.remove_network_plan(conn, network)))
    return plans.of(on(host, live.remove_domain_plan(conn, vm)), cleanup, net)
