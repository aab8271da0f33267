"""Every root command aivm runs was shown in a step that was approved first.

The commands run in-process against libvirt's `test:///default` driver (the
`world` of tests/cli/test_surface.py) as a user who is not root, with
`auto_approve_readonly_sudo = false`. The chokepoint, `aivm.run`, is
watched where argv becomes a process: every argv that starts with `sudo` is
logged and answered by a stand-in for nft (nothing reaches the host's
firewall); the rest run for real. Every approval is logged as the approver
gives it, right after the step was shown. Then: each logged root argv
belongs to an approved step, `--dry-run` runs no root command, and without
a terminal the read-only probe is refused instead of running.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from aivm import run
from aivm.activate import approve
from aivm.activate.plan import Step
from tests.cli import test_surface
from tests.cli.test_surface import World

tiny_image, world = test_surface.tiny_image, test_surface.world  # the fixtures, shared

EXPECTED = "table inet aivm_lab {\n\tchain input {\n\t}\n}\n"
MISSING = "Error: No such file or directory\nlist table inet aivm_lab\n"


@dataclass
class FakeNft:
    """What `sudo nft` and `sudo unshare ... nft` would print; the table lives here."""

    table: str | None = None
    ran: list[tuple[str, ...]] = field(default_factory=list)

    def answer(self, argv: tuple[str, ...]) -> tuple[int, str, str]:
        self.ran.append(argv)
        cmd = argv[2:]  # after "sudo --"
        if cmd[:3] == ("nft", "-s", "list"):
            return (0, self.table, "") if self.table is not None else (1, "", MISSING)
        if cmd[0] == "unshare":
            return 0, EXPECTED, ""
        if cmd[:2] == ("nft", "-f"):
            self.table = EXPECTED
        elif cmd[:2] == ("nft", "delete"):
            self.table = None
        return 0, "", ""


class Bound:
    def __init__(self, answer: tuple[int, str, str]) -> None:
        self.answer = answer

    def __lshift__(self, _stdin: object) -> Bound:
        return self

    def run(self, retcode: object = None, timeout: object = None) -> tuple[int, str, str]:
        return self.answer


@dataclass
class Watch:
    nft: FakeNft
    approved: list[Step]

    def unshown(self) -> list[tuple[str, ...]]:
        """Root argvs that ran without being an action of an approved step."""
        shown = {a.cmd.full_argv() for s in self.approved for a in s.actions if a.cmd}
        return [argv for argv in self.nft.ran if argv not in shown]


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch, world: World) -> Watch:
    nft, approved = FakeNft(), []
    real_command = run._plumbum_command

    def command(argv):  # type: ignore[no-untyped-def]
        return Bound(nft.answer(tuple(argv))) if argv[0] == "sudo" else real_command(argv)

    real_approve = approve.Approver.approve

    def approve_and_log(self, step, index, total, done):  # type: ignore[no-untyped-def]
        real_approve(self, step, index, total, done)
        approved.append(step)

    monkeypatch.setattr(run, "_plumbum_command", command)
    monkeypatch.setattr(run.os, "geteuid", lambda: 1000)  # root commands get `sudo --`
    monkeypatch.setattr(approve.Approver, "approve", approve_and_log)
    world.write(firewall=True)
    world.config.write_text(world.config.read_text()
                            + "\n[behavior]\nauto_approve_readonly_sudo = false\n")
    return Watch(nft, approved)


def test_dry_runs_run_no_root_command_and_say_what_they_could_not_check(
        world: World, watch: Watch) -> None:
    assert world.aivm("build").exit_code == 0
    for args in (("up", "--dry-run"), ("destroy", "--dry-run"), ("host", "fw", "apply",
                                                                  "--dry-run")):
        result = world.aivm(*args)
        assert result.exit_code == 0, result.output
        assert "not run: --dry-run runs no root command" in result.stderr
        assert watch.nft.ran == [], args
    up = world.aivm("up", "--dry-run").stderr
    assert "note: firewall of network lab: not checked: reading the live nft table needs " \
           "root, and --dry-run runs no root command" in up
    assert "$ sudo -- nft -s list table inet aivm_lab" in up


@pytest.mark.parametrize("args", [("up", "--no-wait"), ("destroy",), ("host", "fw", "status"),
                                  ("host", "fw", "apply"), ("host", "fw", "remove")])
def test_without_a_terminal_the_read_only_probe_is_refused_not_run(
        world: World, watch: Watch, args: tuple[str, ...]) -> None:
    result = world.aivm(*args)
    assert result.exit_code == 1
    assert "step(s) need approval and stdin is not a terminal: Read the firewall of network " \
           "lab" in result.stderr
    assert watch.nft.ran == []


def test_every_root_command_that_ran_was_in_an_approved_step(
        world: World, watch: Watch) -> None:
    first = world.aivm("up", "--yes", "--no-wait", "--json")
    assert first.exit_code == 0, first.output
    assert "Apply the firewall of network lab" in first.stdout
    assert any(argv[2:4] == ("nft", "-f") for argv in watch.nft.ran)
    again = world.aivm("up", "--yes", "--no-wait")
    assert "note: firewall of network lab: up to date" in again.stderr
    watch.nft.table = "table inet aivm_lab {\n}\n"  # flushed behind aivm's back
    assert "Apply the firewall of network lab" in world.aivm("up", "--yes", "--no-wait").stderr
    for args in (("status", "--sudo", "--json"), ("host", "doctor", "--sudo"),
                 ("host", "fw", "status"), ("host", "fw", "remove", "--yes-sudo"),
                 ("host", "fw", "apply", "--yes-sudo"), ("destroy", "--yes")):
        world.aivm(*args, input="y\n")
    assert len(watch.nft.ran) >= 12
    assert watch.unshown() == []


def test_auto_approve_readonly_sudo_true_reads_without_asking(world: World,
                                                             watch: Watch) -> None:
    world.config.write_text(world.config.read_text().replace(
        "auto_approve_readonly_sudo = false", "auto_approve_readonly_sudo = true"))
    result = world.aivm("host", "fw", "status")
    assert result.exit_code == 0, result.output
    assert result.stdout == "firewall of network lab: not applied (`aivm host fw apply lab`)\n"
    assert result.stderr.startswith("[probe] Read the firewall of network lab (nft table inet "
                                    "aivm_lab)  (root, read)\n")
    assert watch.nft.ran == [("sudo", "--", "nft", "-s", "list", "table", "inet", "aivm_lab")]
    assert watch.unshown() == []
