from __future__ import annotations

from collections.abc import Iterable

import pytest

from aivm.activate import approve
from aivm.activate.approve import Policy, StepFailed, Ui
from aivm.errors import Aborted, AivmError
from tests.activate.sample import Recorder, sample_plan

# The sample plan's steps and which ones prompt by default:
#   1 root read (auto-approved), 2 user system-write (prompts),
#   3 root system-write (prompts), 4 user user-write (never prompts).
ALL = ["list nft tables", "define network aivm-net from the store", "start network aivm-net",
       "replace the aivm nft table atomically", "write the IP to the user state dir"]


class Script:
    """Scripted answers and captured output; counts the prompts."""

    def __init__(self, answers: Iterable[str] = (), *, tty: bool = True) -> None:
        self.answers = list(answers)
        self.prompts = 0
        self.out: list[str] = []
        self.tty = tty
        self.now = 100.0

    def ask(self, prompt: str) -> str:
        self.prompts += 1
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)

    def clock(self) -> float:
        self.now += 0.25
        return self.now

    def ui(self) -> Ui:
        return Ui(ask=self.ask, is_tty=lambda: self.tty, say=self.out.append, clock=self.clock)

    @property
    def text(self) -> str:
        return "\n".join(self.out)


def _run(answers: Iterable[str] = (), *, tty: bool = True, **policy: bool):
    rec, script = Recorder(), Script(answers, tty=tty)
    outcome = approve.execute(sample_plan(rec), Policy(**policy), script.ui())
    return rec, script, outcome


def test_y_approves_one_step_at_a_time() -> None:
    rec, script, outcome = _run(["y", "y"])
    assert rec.calls == ALL
    assert script.prompts == 2
    assert [t for t, _ in outcome.ran] == [s.title for s in sample_plan(Recorder()).steps]
    assert "done in 0.2 s" in script.text


def test_a_approves_this_and_all_later_steps() -> None:
    rec, script, _ = _run(["a"])
    assert rec.calls == ALL
    assert script.prompts == 1


def test_s_shows_exact_commands_then_asks_again() -> None:
    rec, script, _ = _run(["s", "y", "y"])
    assert rec.calls == ALL
    assert script.prompts == 3
    assert "$ libvirt[qemu:///system] networkDefineXML(/store/ab12-net/network.xml)" in script.text


def test_n_aborts_and_nothing_after_runs() -> None:
    with pytest.raises(Aborted) as err:
        _run(["y", "n"])
    assert err.value.reason == "aborted"
    assert "Apply firewall ruleset" in str(err.value)
    assert "Define and start network aivm-net" in err.value.hint


def test_n_at_first_prompt_runs_only_the_auto_approved_read() -> None:
    rec = Recorder()
    with pytest.raises(Aborted):
        approve.execute(sample_plan(rec), Policy(), Script(["n"]).ui())
    assert rec.calls == ["list nft tables"]


def test_eof_at_prompt_is_an_abort() -> None:
    rec = Recorder()
    with pytest.raises(Aborted):
        approve.execute(sample_plan(rec), Policy(), Script([]).ui())
    assert "define network aivm-net from the store" not in rec.calls


def test_unknown_answer_asks_again() -> None:
    rec, script, _ = _run(["maybe", "a"])
    assert rec.calls == ALL
    assert "answer y, a, s or n" in script.out


def test_yes_approves_everything_without_prompting() -> None:
    rec, script, _ = _run([], tty=False, yes=True)
    assert rec.calls == ALL
    assert script.prompts == 0


def test_yes_sudo_approves_root_steps_only() -> None:
    rec, script, _ = _run(["y"], yes_sudo=True)
    assert rec.calls == ALL
    assert script.prompts == 1  # only the user-privilege libvirt step asked


def test_readonly_root_step_prompts_when_auto_approve_is_off() -> None:
    rec, script, _ = _run(["y", "y", "y"], auto_approve_readonly_sudo=False)
    assert rec.calls == ALL
    assert script.prompts == 3


def test_dry_run_prints_the_full_plan_and_runs_nothing() -> None:
    rec, script, outcome = _run([], tty=False, dry_run=True)
    assert rec.calls == []
    assert outcome.dry_run and outcome.ran == ()
    assert "$ nft -f /store/cd34-nft/ruleset.nft" in script.text
    assert script.prompts == 0


def test_non_tty_without_flag_refuses_before_anything_runs() -> None:
    with pytest.raises(AivmError) as err:
        _run([], tty=False)
    assert err.value.reason == "needs-approval"
    for flag in ("--yes", "--yes-sudo", "--dry-run"):
        assert flag in err.value.hint


def test_non_tty_with_yes_sudo_still_refuses_user_system_writes() -> None:
    rec = Recorder()
    with pytest.raises(AivmError) as err:
        approve.execute(sample_plan(rec), Policy(yes_sudo=True), Script(tty=False).ui())
    assert err.value.reason == "needs-approval"
    assert "Define and start network aivm-net" in str(err.value)
    assert rec.calls == []


def test_failure_stops_the_plan_and_names_step_and_what_ran() -> None:
    rec = Recorder()
    plan = sample_plan(rec, fail_at="start network aivm-net")
    with pytest.raises(StepFailed) as err:
        approve.execute(plan, Policy(yes=True), Script().ui())
    assert err.value.reason == "step-failed"
    assert err.value.step.title == "Define and start network aivm-net"
    assert err.value.done == ("Inspect the host firewall",)
    assert "Inspect the host firewall" in err.value.hint
    assert err.value.cause_reason == "RuntimeError"
    assert rec.calls == ["list nft tables", "define network aivm-net from the store"]


def test_empty_plan_says_so_and_needs_no_terminal() -> None:
    from aivm.activate.plan import Plan

    script = Script(tty=False)
    outcome = approve.execute(Plan(notes=("domain vm1: up to date",)), Policy(), script.ui())
    assert outcome.ran == ()
    assert "nothing to do" in script.text and "domain vm1: up to date" in script.text


def test_command_actions_run_through_the_runner(tmp_path) -> None:
    from aivm.activate.plan import Action, Plan, Step
    from aivm.run import Cmd

    target = tmp_path / "made"
    step = Step("Touch a file", "to prove commands run",
                (Action.command(Cmd.of("touch", str(target), meaning="create a file")),))
    approve.execute(Plan((step,)), Policy(yes=True), Script().ui())
    assert target.is_file()


# ---- phase one: read-only root probes --------------------------------------------------------

def probe_step(tmp_path):  # type: ignore[no-untyped-def]
    from aivm.activate.plan import Action, Effect, Privilege, Step
    from aivm.run import Cmd

    marker = tmp_path / "ran"
    cmd = Cmd.of("sh", "-c", f"touch {marker}; echo listing; exit 1", meaning="list the table")
    return Step("Read the firewall of network lab", "is the table there?",
                (Action.command(cmd),), Privilege.ROOT, Effect.READ), cmd, marker


def test_probe_auto_approved_runs_and_returns_results_even_on_nonzero_exit(tmp_path) -> None:
    step, cmd, marker = probe_step(tmp_path)
    script = Script(tty=False)
    results = approve.probe(step, Policy(), script.ui())
    assert results is not None and results[cmd].returncode == 1
    assert results[cmd].stdout == "listing\n" and marker.exists()
    assert script.out[0].startswith("[probe] Read the firewall of network lab  (root, read)")
    assert script.prompts == 0


def test_probe_asks_when_auto_approve_is_off_and_n_runs_nothing(tmp_path) -> None:
    step, _, marker = probe_step(tmp_path)
    script = Script(["n"])
    with pytest.raises(Aborted):
        approve.probe(step, Policy(auto_approve_readonly_sudo=False), script.ui())
    assert script.prompts == 1 and not marker.exists()


def test_probe_without_terminal_is_refused_when_it_needs_an_answer(tmp_path) -> None:
    step, _, marker = probe_step(tmp_path)
    with pytest.raises(AivmError) as err:
        approve.probe(step, Policy(auto_approve_readonly_sudo=False), Script(tty=False).ui())
    assert err.value.reason == "needs-approval" and not marker.exists()
    assert approve.probe(step, Policy(auto_approve_readonly_sudo=False, yes_sudo=True),
                         Script(tty=False).ui()) is not None


def test_probe_under_dry_run_runs_nothing_and_says_so(tmp_path) -> None:
    step, _, marker = probe_step(tmp_path)
    script = Script(tty=False)
    assert approve.probe(step, Policy(dry_run=True), script.ui()) is None
    assert not marker.exists()
    assert "not run: --dry-run runs no root command" in script.text
    assert "$ sh -c" in script.text  # the exact command is shown


def test_probe_refuses_a_step_that_writes(tmp_path) -> None:
    import dataclasses

    from aivm.activate.plan import Effect

    step, _, marker = probe_step(tmp_path)
    with pytest.raises(ValueError):
        approve.probe(dataclasses.replace(step, effect=Effect.SYSTEM_WRITE), Policy(),
                      Script().ui())
    assert not marker.exists()
