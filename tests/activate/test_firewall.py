"""The firewall's "up to date": the live table's content against the store's ruleset.

Listings here are what nft 1.0.6 prints for `nft -s list table` (checked on the
real stack by tests/e2e/test_scenario.py::test_3b and tests/e2e/test_host.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aivm.activate import firewall
from aivm.activate.firewall import Live, Probe, State
from aivm.errors import CommandError
from aivm.run import Result

LISTING = """\
table inet aivm_lab {
\tset blocked4 {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.0.0.0/8, 172.16.0.0/12,
\t\t\t     192.168.0.0/16 }
\t}

\tset seen4 {
\t\ttype ipv4_addr
\t\tflags dynamic,timeout
\t\ttimeout 1h
\t\telements = { 203.0.113.7 timeout 1h expires 59m58s }
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname != "virbr-lab" accept
\t\tcounter drop comment "guest to host: everything else"
\t}
}
"""


def test_elements_of_run_time_sets_do_not_change_the_digest() -> None:
    refilled = LISTING.replace("{ 203.0.113.7 timeout 1h expires 59m58s }",
                               "{ 198.51.100.1 timeout 1h expires 1s,\n\t\t\t     1.1.1.1 }")
    emptied = LISTING.replace("\t\telements = { 203.0.113.7 timeout 1h expires 59m58s }\n", "")
    digests = {firewall.listing_digest(t) for t in (LISTING, refilled, emptied)}
    assert len(digests) == 1
    assert "203.0.113.7" not in firewall.normalise(LISTING)
    assert "192.168.0.0/16" in firewall.normalise(LISTING)  # a static set is content


@pytest.mark.parametrize("edit", [
    lambda t: t.replace("192.168.0.0/16", "192.168.0.0/17"),              # a static element
    lambda t: t.replace('\t\tcounter drop', '\t\ttcp dport 22 accept\n\t\tcounter drop'),
    lambda t: t.replace("virbr-lab", "eth0"),
    lambda t: t.replace('\t\tiifname != "virbr-lab" accept\n', ""),       # a rule deleted
], ids=["static-element", "rule-added", "bridge", "rule-deleted"])
def test_any_other_change_changes_the_digest(edit) -> None:  # type: ignore[no-untyped-def]
    assert firewall.listing_digest(edit(LISTING)) != firewall.listing_digest(LISTING)


def result(probe_cmd, rc: int, out: str = "", err: str = "") -> Result:  # type: ignore[no-untyped-def]
    return Result(probe_cmd, rc, out, err)


def probe(ruleset: Path | None = Path("/store/k-net.lab.nft/ruleset.nft")) -> Probe:
    return Probe("lab", "aivm_lab", ruleset)


def answers(p: Probe, live: tuple[int, str, str], expected: str = LISTING) -> dict:  # type: ignore[type-arg]
    out = {p.list_cmd(): result(p.list_cmd(), *live)}
    made = p.expected_cmd()
    if made is not None:
        out[made] = result(made, 0, expected)
    return out


def test_probe_is_one_read_only_root_step_with_the_exact_commands() -> None:
    step = probe().step()
    assert (step.is_root, step.is_read_only) == (True, True)
    assert [a.cmd.argv for a in step.actions if a.cmd] == [
        ("nft", "-s", "list", "table", "inet", "aivm_lab"),
        ("unshare", "--net", "--", "sh", "-c", 'nft -f "$1" && exec nft -s list table inet "$2"',
         "aivm-nft", "/store/k-net.lab.nft/ruleset.nft", "aivm_lab")]
    assert [a.cmd.argv[0] for a in probe(None).step().actions if a.cmd] == ["nft"]


def test_probe_reads_current_outdated_missing_and_unchecked() -> None:
    p = probe()
    assert p.read(answers(p, (0, LISTING, ""))).state is State.CURRENT
    flushed = "table inet aivm_lab {\n}\n"
    assert p.read(answers(p, (0, flushed, ""))).state is State.OUTDATED
    gone = (1, "", "Error: No such file or directory\nlist table inet aivm_lab\n")
    assert p.read(answers(p, gone)).state is State.MISSING
    assert p.read(None) == Live(State.UNCHECKED)
    assert probe(None).read(answers(probe(None), (0, LISTING, ""))).state is State.PRESENT


def test_probe_failure_is_an_error_not_a_missing_table() -> None:
    p = probe()
    with pytest.raises(CommandError) as err:
        p.read(answers(p, (1, "", "sudo: a password is required")))
    assert err.value.reason == "command-failed"


def titles(plan) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.title for s in plan.steps]


def test_apply_plan_follows_the_live_content() -> None:
    rules = Path("/store/k-net.lab.nft/ruleset.nft")
    current = firewall.apply_plan("lab", "aivm_lab", rules, Live(State.CURRENT))
    assert current.steps == () and current.notes == ("firewall of network lab: up to date",)
    for state in (State.MISSING, State.OUTDATED):
        plan = firewall.apply_plan("lab", "aivm_lab", rules, Live(state))
        assert titles(plan) == ["Apply the firewall of network lab"] and plan.notes == ()
        assert [a.cmd.argv for a in plan.steps[0].actions if a.cmd] == [
            ("nft", "-f", str(rules))]
    dry = firewall.apply_plan("lab", "aivm_lab", rules, Live())
    assert titles(dry) == ["Apply the firewall of network lab"]
    assert dry.notes == (f"firewall of network lab: {firewall.DRY_RUN}",)


def test_remove_plan_follows_the_live_table() -> None:
    assert firewall.remove_plan("lab", "aivm_lab", Live(State.MISSING)).notes == (
        "firewall of network lab: not applied",)
    there = firewall.remove_plan("lab", "aivm_lab", Live(State.PRESENT), "asked to")
    assert titles(there) == ["Remove the firewall of network lab"]
    assert there.steps[0].actions[0].cmd.argv == ("nft", "delete", "table", "inet", "aivm_lab")
    dry = firewall.remove_plan("lab", "aivm_lab", Live(), "asked to")
    assert dry.steps[0].why == "asked to (if the table is there: a dry run could not look)"
