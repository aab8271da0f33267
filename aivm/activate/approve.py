"""Approving and running a plan, one step at a time.

Who must say yes, per step:
- read-only steps as the user: nobody;
- read-only root steps: nobody when `auto_approve_readonly_sudo`, else as root steps;
- root steps: the user, unless `--yes` or `--yes-sudo`;
- steps that change system state as the user (libvirt calls): the user, unless `--yes`;
- steps that write only the user's own files: nobody.

At a prompt: `y` this step, `a` this and every later step, `s` show the exact
commands and ask again, `n` abort (nothing after that runs). Without a
terminal and without a flag that covers every prompt, the plan is refused
before anything runs. `--dry-run` prints the full plan and runs nothing.

Plans that depend on root-only facts (the live nft table) are made in two
phases: `probe` shows, approves and runs a read-only step first and hands
back what its commands printed; the plan is then built from that. Under
`--dry-run` the probe does not run (None), and the plan says what it could
not check. No root command runs outside a step shown here.

The input function, the tty check, the output and the clock are injected
(`Ui`), so tests script the answers without patching anything.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aivm.activate import plan as plans
from aivm.activate.plan import Effect, Plan, Step
from aivm.errors import Aborted, AivmError

if TYPE_CHECKING:
    from aivm.config.schema import Behavior
    from aivm.run import Cmd, Result


@dataclass(frozen=True)
class Policy:
    yes: bool = False
    yes_sudo: bool = False
    dry_run: bool = False
    auto_approve_readonly_sudo: bool = True

    @classmethod
    def of(cls, behavior: Behavior, *, yes: bool, yes_sudo: bool, dry_run: bool) -> Policy:
        """Flags over the config's [behavior]."""
        return cls(yes=yes, yes_sudo=yes_sudo or behavior.yes_sudo, dry_run=dry_run,
                   auto_approve_readonly_sudo=behavior.auto_approve_readonly_sudo)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Ui:
    ask: Callable[[str], str] = input
    is_tty: Callable[[], bool] = field(default=lambda: sys.stdin.isatty())
    say: Callable[[str], None] = _stderr
    clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class Outcome:
    """What ran: (step title, seconds) in order; empty for a dry run or an empty plan."""

    ran: tuple[tuple[str, float], ...] = ()
    dry_run: bool = False


class StepFailed(AivmError):
    """A step's action failed: the plan stopped there; `done` lists the steps that ran."""

    def __init__(self, step: Step, done: tuple[str, ...], cause: BaseException) -> None:
        ran = "; ".join(done) if done else "nothing (this was the first step)"
        hint = f"already done: {ran}. Fix the cause and run the command again to continue."
        if isinstance(cause, AivmError) and cause.hint:
            hint = f"{cause.hint}\n{hint}"
        super().__init__(f"step '{step.title}' failed: {cause}", hint=hint, reason="step-failed")
        self.step = step
        self.done = done
        self.cause = cause
        self.cause_reason = cause.reason if isinstance(cause, AivmError) else type(cause).__name__


def needs_prompt(step: Step, policy: Policy) -> bool:
    """Whether this step waits for a human answer under `policy` (before any `a`)."""
    if policy.yes:
        return False
    if step.is_read_only:
        return step.is_root and not (policy.auto_approve_readonly_sudo or policy.yes_sudo)
    if step.is_root:
        return not policy.yes_sudo
    return step.effect is Effect.SYSTEM_WRITE


def refuse_without_terminal(plan: Plan, policy: Policy, ui: Ui) -> None:
    """Raise `needs-approval` when some step would prompt but nobody can answer."""
    waiting = [s.title for s in plan.steps if needs_prompt(s, policy)]
    if waiting and not ui.is_tty():
        raise AivmError(
            f"{len(waiting)} step(s) need approval and stdin is not a terminal: "
            + "; ".join(waiting),
            hint="pass --yes (approve all), --yes-sudo (approve root steps) "
                 "or --dry-run (only print the plan)",
            reason="needs-approval")


class Approver:
    """Asks once per step; remembers an `a` answer for the rest of the plan."""

    PROMPT = "run this step? [y]es / [a]ll remaining / [s]how commands / [n]o: "

    def __init__(self, policy: Policy, ui: Ui) -> None:
        self.policy = policy
        self.ui = ui
        self.all_approved = False

    def approve(self, step: Step, index: int, total: int, done: tuple[str, ...]) -> None:
        if self.all_approved or not needs_prompt(step, self.policy):
            return
        while True:
            answer = self._ask()
            if answer in ("y", "yes"):
                return
            if answer in ("a", "all"):
                self.all_approved = True
                return
            if answer in ("s", "show"):
                self.ui.say(plans.render_step(step, index, total, full=True))
            elif answer in ("n", "no", ""):
                raise _aborted(step, done)
            else:
                self.ui.say("answer y, a, s or n")

    def _ask(self) -> str:
        try:
            return self.ui.ask(self.PROMPT).strip().lower()
        except EOFError:
            return "n"


def _aborted(step: Step, done: tuple[str, ...]) -> Aborted:
    ran = "; ".join(done) if done else "nothing"
    return Aborted(f"aborted at step '{step.title}': it and every later step did not run",
                   hint=f"already done: {ran}. Use --dry-run to review the whole plan.",
                   reason="aborted")


def execute(plan: Plan, policy: Policy, ui: Ui | None = None) -> Outcome:
    """Preview, approve and run `plan` step by step; stop at the first failure."""
    ui = ui or Ui()
    if plan.is_empty or policy.dry_run:
        ui.say(plans.render(plan, full=policy.dry_run))
        return Outcome(dry_run=policy.dry_run)
    refuse_without_terminal(plan, policy, ui)
    approver = Approver(policy, ui)
    total = len(plan.steps)
    ran: list[tuple[str, float]] = []
    for index, step in enumerate(plan.steps, 1):
        done = tuple(title for title, _ in ran)
        ui.say(plans.render_step(step, index, total))
        approver.approve(step, index, total, done)
        ran.append((step.title, _run_step(step, ui, done)))
    for note in plan.notes:
        ui.say(f"note: {note}")
    return Outcome(tuple(ran))


def probe(step: Step, policy: Policy, ui: Ui | None = None) -> dict[Cmd, Result] | None:
    """Phase one: show, approve and run a read-only step; each command's result (by Cmd).

    A non-zero exit is a result, not a failure (a missing table is an answer);
    a command that cannot run stops here. None under `--dry-run`: nothing ran.
    """
    from aivm import run

    if not step.is_read_only or any(a.cmd is None for a in step.actions):
        raise ValueError(f"a probe runs read-only commands only: {step.title}")
    ui = ui or Ui()
    if policy.dry_run:
        ui.say(plans.render_step(step, 0, 0, full=True)
               + "\n      not run: --dry-run runs no root command")
        return None
    refuse_without_terminal(Plan((step,)), policy, ui)
    ui.say(plans.render_step(step, 0, 0))
    Approver(policy, ui).approve(step, 0, 0, ())
    try:
        return {a.cmd: run.run(a.cmd, check=False, timeout=a.timeout)
                for a in step.actions if a.cmd is not None}
    except Exception as exc:
        raise StepFailed(step, (), exc) from exc


def _run_step(step: Step, ui: Ui, done: tuple[str, ...]) -> float:
    start = ui.clock()
    try:
        for action in step.actions:
            action.perform()
    except Exception as exc:
        raise StepFailed(step, done, exc) from exc
    seconds = ui.clock() - start
    ui.say(f"      done in {seconds:.1f} s")
    return seconds
