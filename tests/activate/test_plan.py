from __future__ import annotations

from aivm.activate import plan as plans
from aivm.activate.plan import Effect, Plan, Privilege, Step
from tests.activate.sample import Recorder, cmd_action, sample_plan


def test_compact_preview(snapshot) -> None:
    assert plans.render(sample_plan(Recorder())) == snapshot


def test_full_preview_shows_exact_commands(snapshot) -> None:
    text = plans.render(sample_plan(Recorder()), full=True)
    assert "$ nft -f /store/cd34-nft/ruleset.nft" in text
    assert text == snapshot


def test_command_action_shows_its_argv(snapshot) -> None:
    step = Step("Give vm1 its writable disk", "vm1 has no disk yet", (cmd_action(),),
                Privilege.USER, Effect.USER_WRITE)
    assert plans.render(Plan((step,)), full=True) == snapshot


def test_empty_plan_says_nothing_to_do() -> None:
    text = plans.render(plans.of(None, "network aivm-net: up to date", None))
    assert text == ("note: network aivm-net: up to date\n"
                    "nothing to do: live state matches the store")


def test_of_keeps_order_of_steps_and_notes() -> None:
    full = sample_plan(Recorder())
    joined = plans.of(full.steps[0], "a", Plan(full.steps[1:3], ("b",)), None, full.steps[3])
    assert [s.title for s in joined.steps] == [s.title for s in full.steps]
    assert joined.notes == ("a", "b")


def test_rendering_is_deterministic() -> None:
    assert plans.render(sample_plan(Recorder()), full=True) == \
        plans.render(sample_plan(Recorder()), full=True)
