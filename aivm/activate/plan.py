"""Activation plans: steps the user previews and approves, each a list of actions.

An *action* is one command (a `Cmd` run through aivm.run) or one in-process
API call (libvirt-python), with a one-line meaning and the exact text shown
to the user. A *step* groups the actions that serve one purpose, says why it
exists, what privilege it needs and what it changes. A *plan* is the ordered
steps plus notes such as "network aivm-net: up to date".

Rendering is deterministic so that previews can be snapshot-tested: the
compact form shows each step's title, why and one meaning per action; the
full form adds the exact command text under each meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from aivm.run import Cmd


class Privilege(StrEnum):
    USER = "user"
    ROOT = "root"


class Effect(StrEnum):
    READ = "read"
    USER_WRITE = "user-write"
    SYSTEM_WRITE = "system-write"


@dataclass(frozen=True)
class Action:
    """One command or API call. Build with `Action.command` or `Action.api`."""

    meaning: str
    text: str = ""
    cmd: Cmd | None = None
    call: Callable[[], object] | None = field(default=None, compare=False, repr=False)
    timeout: float | None = None

    @classmethod
    def command(cls, cmd: Cmd, *, timeout: float | None = None) -> Action:
        return cls(cmd.meaning or " ".join(cmd.argv), "", cmd, None, timeout)

    @classmethod
    def api(cls, meaning: str, text: str, call: Callable[[], object]) -> Action:
        return cls(meaning, text, None, call)

    @property
    def shown(self) -> str:
        """The exact text the user approves: the full argv (prefixes included) or the API call."""
        return self.cmd.shell() if self.cmd is not None else self.text

    def perform(self) -> None:
        if self.cmd is not None:
            from aivm import run

            run.run(self.cmd, timeout=self.timeout)
        elif self.call is not None:
            self.call()


@dataclass(frozen=True)
class Step:
    title: str
    why: str
    actions: tuple[Action, ...]
    privilege: Privilege = Privilege.USER
    effect: Effect = Effect.SYSTEM_WRITE

    @property
    def is_root(self) -> bool:
        return self.privilege is Privilege.ROOT

    @property
    def is_read_only(self) -> bool:
        return self.effect is Effect.READ


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.steps

    def __add__(self, other: Plan) -> Plan:
        return Plan(self.steps + other.steps, self.notes + other.notes)


def of(*parts: Step | Plan | str | None) -> Plan:
    """A plan from steps, sub-plans and notes in order; `None` entries are skipped."""
    plan = Plan()
    for part in parts:
        if isinstance(part, Step):
            plan = plan + Plan((part,))
        elif isinstance(part, Plan):
            plan = plan + part
        elif isinstance(part, str):
            plan = plan + Plan(notes=(part,))
    return plan


def step_header(step: Step, index: int, total: int) -> str:
    """`[2/5] title  (root, system-write)`; a probe (total 0) is `[probe] title  (root, read)`."""
    where = f"{index}/{total}" if total else "probe"
    return f"[{where}] {step.title}  ({step.privilege}, {step.effect})"


def render_step(step: Step, index: int, total: int, *, full: bool = False) -> str:
    lines = [step_header(step, index, total), f"      why: {step.why}"]
    for action in step.actions:
        lines.append(f"      - {action.meaning}")
        if full:
            lines.extend(f"          $ {line}" if n == 0 else f"            {line}"
                         for n, line in enumerate(action.shown.splitlines() or [""]))
    return "\n".join(lines)


def render(plan: Plan, *, full: bool = False) -> str:
    """The whole plan as text: steps in order, then notes; "nothing to do" when empty."""
    total = len(plan.steps)
    parts = [render_step(s, i, total, full=full) for i, s in enumerate(plan.steps, 1)]
    parts.extend(f"note: {note}" for note in plan.notes)
    if plan.is_empty:
        parts.append("nothing to do: live state matches the store")
    return "\n".join(parts)
