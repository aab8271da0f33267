"""`aivm down` and `aivm destroy`.

destroy = stop, undefine, remove the writable disk and the VM's gc roots; the
store is untouched (`aivm gc` frees it). The network and its firewall go too
when no other defined VM uses the network.
"""

from __future__ import annotations

from aivm import paths
from aivm.activate import egress, firewall, live
from aivm.activate import plan as plans
from aivm.activate.disk import disk_path, needs_root
from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.config.schema import Config, Vm
from aivm.graph.store import Store
from aivm.recipes.nft_ruleset import table_name
from aivm.run import Cmd


def destroy_plan(conn: live.Conn, store: Store, cfg: Config, vm: Vm,
                 nft: firewall.Live | None = None) -> Plan:
    """`nft`: what `firewall_probe` saw (None: the network stays, or a dry run)."""
    from aivm.guest import attach, ports

    return plans.of(
        ports.forget_step(vm.name),     # published ports go with the VM (guest/ports.py)
        live.remove_domain_plan(conn, vm.name),
        attach.host_cleanup_plan(vm.name),  # binds into user folders go before the rm -rf
        _remove_state(vm),
        _release_roots(store, vm),
        _network_if_unused(conn, cfg, vm, nft or firewall.Live()),
    )


def _remove_state(vm: Vm) -> Step | None:
    state = paths.vm_state_dir(vm.name)
    if not state.exists():
        return None
    root = needs_root(disk_path(vm.name))
    return Step(f"Remove the writable disk of VM {vm.name}",
                "the guest's changes go with the VM; the store keeps the pristine image",
                (Action.command(Cmd.of("rm", "-rf", "--", str(state), root=root,
                                       meaning=f"delete {state} (disk, console log)")),),
                Privilege.ROOT if root else Privilege.USER,
                Effect.SYSTEM_WRITE if root else Effect.USER_WRITE)


def _release_roots(store: Store, vm: Vm) -> Step | None:
    """Only this VM's roots: its own folder, by its exact name (no prefix match)."""
    if not store.vm_roots(vm.name):
        return None
    folder = store.vm_roots_dir(vm.name)
    return Step(f"Release the store entries of VM {vm.name}",
                "`aivm gc` may then remove what no other VM uses",
                (Action.api(f"remove the gc roots of VM {vm.name}", f"rm -r {folder}",
                            lambda: store.remove_vm_roots(vm.name)),),
                Privilege.USER, Effect.USER_WRITE)


def _others_on_network(conn: live.Conn, cfg: Config, vm: Vm) -> list[str]:
    return [o.name for o in cfg.vms if o.name != vm.name and o.network == vm.network
            and live.read_domain(conn, o.name).exists]


def firewall_probe(conn: live.Conn, cfg: Config, vm: Vm) -> firewall.Probe | None:
    """Phase one: the read-only probe of the network's table, when destroy would remove it."""
    if _others_on_network(conn, cfg, vm):
        return None
    return firewall.Probe(vm.network, table_name(vm.network))


def _network_if_unused(conn: live.Conn, cfg: Config, vm: Vm, nft: firewall.Live) -> Plan | str:
    others = _others_on_network(conn, cfg, vm)
    if others:
        return f"network {vm.network}: kept, used by {', '.join(others)}"
    return plans.of(firewall.remove_plan(vm.network, table_name(vm.network), nft,
                                         f"no VM uses network {vm.network} any more"),
                    egress.remove_plan(vm.network),
                    live.remove_network_plan(conn, vm.network))
