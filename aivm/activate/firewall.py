"""The network's nft table: read, compared with the store, applied, removed.

"Up to date" is decided from the live table's content. The probe reads what
`nft -s list table inet <t>` prints (rules and sets, no counter values) and
what nft makes of the store's ruleset when it is loaded into a throwaway
network namespace (`unshare --net`, gone when the command exits); both are
normalised the same way (the elements of sets filled at run time, those with
`flags dynamic` or a timeout, are left out) and digested. A flushed table
(`nft flush ruleset`), a rule added by hand, or another network's ruleset in
the same table all differ, so `aivm up` reapplies; traffic changes nothing.

Both reads need root, so they are one probe step (root, read-only) that runs
before the plan is built: plans are made in two phases. The probe is shown and
approved like any step (without a prompt only under
`auto_approve_readonly_sudo`); `--dry-run` never runs it, and the plan then
says what it could not check.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from aivm.activate import plan as plans
from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.graph.scheduler import NodeState
from aivm.recipes.nft_ruleset import NftRuleset, table_name
from aivm.run import Cmd, Result, failure

DRY_RUN = "not checked: reading the live nft table needs root, and --dry-run runs no root command"


class State(StrEnum):
    UNCHECKED = "not checked"
    MISSING = "missing"
    PRESENT = "present"        # the table exists (its content was not compared)
    CURRENT = "applied"        # the live table prints what the store's ruleset makes
    OUTDATED = "outdated"      # it prints something else


@dataclass(frozen=True)
class Live:
    """What the probe saw of one network's table."""

    state: State = State.UNCHECKED
    digest: str = ""           # of the live listing, normalised
    expected: str = ""         # of the store's ruleset as nft lists it

    @property
    def exists(self) -> bool:
        return self.state in (State.PRESENT, State.CURRENT, State.OUTDATED)


@dataclass(frozen=True)
class Probe:
    """The read-only root step for one network's table; `ruleset` None: presence only."""

    network: str
    table: str
    ruleset: Path | None = None

    def list_cmd(self) -> Cmd:
        return Cmd.of("nft", "-s", "list", "table", "inet", self.table, root=True, in_netns=True,
                      meaning=f"list the live nft table inet {self.table} (no counters)")

    def expected_cmd(self) -> Cmd | None:
        if self.ruleset is None:
            return None
        script = 'nft -f "$1" && exec nft -s list table inet "$2"'
        return Cmd.of("unshare", "--net", "--", "sh", "-c", script, "aivm-nft",
                      str(self.ruleset), self.table, root=True,
                      meaning="list the store's ruleset as nft loads it, in a throwaway "
                              "network namespace (nothing on the host changes)")

    def step(self) -> Step:
        cmds = [c for c in (self.list_cmd(), self.expected_cmd()) if c is not None]
        why = ("is the live table the store's ruleset? (flushed or edited tables differ)"
               if self.ruleset else "is the table there?")
        return Step(f"Read the firewall of network {self.network} (nft table inet {self.table})",
                    why,
                    tuple(Action.command(c) for c in cmds), Privilege.ROOT, Effect.READ)

    def read(self, results: Mapping[Cmd, Result] | None) -> Live:
        """The probe's answer; `results` None (a dry run): not checked."""
        if results is None:
            return Live()
        listed = results[self.list_cmd()]
        if not listed.ok:
            if "No such file or directory" not in listed.stderr:
                raise failure(listed)
            return Live(State.MISSING)
        digest = listing_digest(listed.stdout)
        expected_cmd = self.expected_cmd()
        if expected_cmd is None:
            return Live(State.PRESENT, digest)
        made = results[expected_cmd]
        if not made.ok:
            raise failure(made)
        expected = listing_digest(made.stdout)
        return Live(State.CURRENT if digest == expected else State.OUTDATED, digest, expected)


def network_probe(network: str, states: Mapping[str, NodeState]) -> Probe:
    """The probe of a network's table, compared with its ruleset node when that is built
    (presence only when the firewall is disabled or its ruleset not built yet)."""
    from aivm.config.to_graph import nft_name

    node = states.get(nft_name(network))
    ruleset = node.path / NftRuleset.OUTPUT if node is not None else None
    return Probe(network, table_name(network), ruleset if ruleset and ruleset.is_file() else None)


_BLOCK = re.compile(r"\t(set|map) \S+ \{")


def normalise(listing: str) -> str:
    """The listing without the elements of sets filled at run time (flags dynamic/timeout)."""
    lines = listing.strip().splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if _BLOCK.fullmatch(lines[i]) and "\t}" in lines[i:]:
            end = lines.index("\t}", i)
            out += _set_block(lines[i:end + 1])
            i = end + 1
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out) + "\n"


def _set_block(block: list[str]) -> list[str]:
    props = [line.strip() for line in block]
    runtime = any(p.startswith("timeout ") or (p.startswith("flags ") and (
        "dynamic" in p or "timeout" in p)) for p in props)
    if not runtime:
        return block
    kept: list[str] = []
    skipping = False
    for line, prop in zip(block, props, strict=True):
        if prop.startswith("elements = {"):
            skipping = True
        if not skipping:
            kept.append(line)
        elif prop.endswith("}"):
            skipping = False
    return kept


def listing_digest(listing: str) -> str:
    return hashlib.sha256(normalise(listing).encode()).hexdigest()


def apply_plan(network: str, table: str, ruleset: Path, live: Live) -> Plan:
    """Load the ruleset unless the live table already prints what it makes."""
    if live.state is State.CURRENT:
        return plans.of(f"firewall of network {network}: up to date")
    why = {State.MISSING: f"nft table inet {table} is missing",
           State.OUTDATED: "the live table differs from the store's ruleset (the config "
                           "changed, or the table was flushed or edited)",
           }.get(live.state, "the live table could not be read in a dry run: `aivm up` "
                             "applies the ruleset only when the table differs")
    return plans.of(Step(
        f"Apply the firewall of network {network}",
        f"{why}; guests may then reach the internet, not the host's services or private "
        "networks (apart from what the firewall settings allow)",
        (Action.command(Cmd.of("nft", "-f", str(ruleset), root=True, in_netns=True,
                               meaning=f"replace nft table inet {table} in one transaction")),),
        Privilege.ROOT, Effect.SYSTEM_WRITE),
        f"firewall of network {network}: {DRY_RUN}" if live.state is State.UNCHECKED else None)


def remove_plan(network: str, table: str, live: Live, why: str = "",
                absent: str = "not applied") -> Plan:
    """Delete the table; when there is none, a note ending in `absent`."""
    if live.state is State.MISSING:
        return plans.of(f"firewall of network {network}: {absent}")
    unchecked = live.state is State.UNCHECKED
    return plans.of(Step(
        f"Remove the firewall of network {network}",
        (why or f"the firewall of network {network} is disabled in the config")
        + (" (if the table is there: a dry run could not look)" if unchecked else ""),
        (Action.command(Cmd.of("nft", "delete", "table", "inet", table, root=True,
                               in_netns=True, meaning=f"delete nft table inet {table}")),),
        Privilege.ROOT, Effect.SYSTEM_WRITE),
        f"firewall of network {network}: {DRY_RUN}" if unchecked else None)
