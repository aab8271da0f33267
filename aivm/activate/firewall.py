"""The network's nft table: applied with one `nft -f`, removed with one delete.

nft keeps no comment we could read the node key back from, so the key of the
applied ruleset is recorded beside the per-VM state (`<state>/nft/<net>.key`);
"up to date" means: the table exists in the kernel and the recorded key is
the desired one.
"""

from __future__ import annotations

from pathlib import Path

from aivm import paths
from aivm.activate import plan as plans
from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.run import Cmd, run


def key_file(network: str) -> Path:
    return paths.state_root() / "nft" / f"{network}.key"


def table_exists(table: str) -> bool:
    probe = Cmd.of("nft", "list", "table", "inet", table, root=True, in_netns=True,
                   meaning=f"look for nft table inet {table}")
    return run(probe, check=False).ok


def applied_key(network: str) -> str | None:
    try:
        return key_file(network).read_text().strip() or None
    except OSError:
        return None


def apply_plan(network: str, table: str, ruleset: Path, key: str) -> Plan:
    if applied_key(network) == key and table_exists(table):
        return plans.of(f"firewall of network {network}: up to date")
    record = key_file(network)
    return plans.of(Step(
        f"Apply the firewall of network {network}",
        "guests may reach the internet, not the host's services or private networks "
        "(apart from the allowed ports)",
        (Action.command(Cmd.of("nft", "-f", str(ruleset), root=True, in_netns=True,
                               meaning=f"replace nft table inet {table} in one transaction")),
         Action.command(Cmd.of("mkdir", "-p", str(record.parent), root=True,
                               meaning="make the firewall record dir")),
         Action.command(Cmd.of("tee", str(record), root=True, stdin=key + "\n",
                               meaning="record which ruleset is applied"))),
        Privilege.ROOT, Effect.SYSTEM_WRITE))


def remove_plan(network: str, table: str, why: str = "", absent: str = "not applied") -> Plan:
    """Delete the table; when there is none, a note ending in `absent`."""
    if not table_exists(table):
        return plans.of(f"firewall of network {network}: {absent}")
    return plans.of(Step(
        f"Remove the firewall of network {network}",
        why or f"the firewall of network {network} is disabled in the config",
        (Action.command(Cmd.of("nft", "delete", "table", "inet", table, root=True,
                               in_netns=True, meaning=f"delete nft table inet {table}")),
         Action.command(Cmd.of("rm", "-f", str(key_file(network)), root=True,
                               meaning="forget the applied ruleset"))),
        Privilege.ROOT, Effect.SYSTEM_WRITE))
