"""The core facade (aivm/session.py): one policy from config + flags, one `up` sequence.

`aivm ssh .` / `aivm code .` on a VM that is not running go through `Session.up`, the
sequence of `aivm up`, so a saved booted state is restored for them too (the plan is
asked for with `booted=` the policy's restore); the real-stack proof is in
tests/e2e/test_workplace2.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from aivm import session as core
from aivm.activate import plan as plans
from aivm.activate import up as activation
from aivm.activate.approve import Outcome
from aivm.config.schema import Behavior, Config, Vm
from aivm.errors import ConfigError
from aivm.guest import ssh, workflow

TARGET = ssh.Target("box", "agent", "10.0.0.5", Path("/k"))


@dataclasses.dataclass
class Env:
    yes: bool = False
    dry_run: bool = False
    _cache: dict[str, Any] = dataclasses.field(default_factory=dict)
    config_path: Path = Path("/nonexistent/config.toml")
    connect_uri: str = "test:///default"

    def store(self) -> None:
        return None

    def config(self, *, implicit: bool = False) -> Config:
        raise ConfigError("no config", hint="aivm config init", reason="no-config")


def test_policy_is_the_flags_over_the_config() -> None:
    behavior = Behavior(yes_sudo=True, restore_snapshots=False)
    policy = core.Policy.of(behavior, core.Flags(yes=True, dry_run=True,
                                                 allow_sensitive=True))
    assert policy.approval.yes and policy.approval.yes_sudo and policy.dry_run
    assert policy.allow_sensitive and not policy.restore
    assert core.Policy.of(Behavior(), core.Flags()).restore


def test_the_global_yes_joins_the_commands_flags() -> None:
    policy = core.policy_for(Env(yes=True), core.Flags())  # type: ignore[arg-type]
    assert policy.approval.yes and not policy.approval.yes_sudo
    assert policy.restore  # [behavior]'s defaults when there is no config


@pytest.mark.parametrize("restore", [True, False])
def test_a_folder_shell_on_a_stopped_vm_takes_the_up_sequence(
        monkeypatch: pytest.MonkeyPatch, restore: bool) -> None:
    """Before the facade, workflow.bring_up planned with booted=False: it always booted."""
    asked: dict[str, Any] = {}
    notes: list[str] = []

    def plan_up(conn: Any, store: Any, art: Any, **kw: Any) -> plans.Plan:
        asked.update(kw)
        return plans.Plan(notes=("nothing to do",))

    cfg = Config(vms=(Vm(name="box"),))
    policy = core.Policy.of(Behavior(restore_snapshots=restore), core.Flags(yes=True))
    session = core.Session(Env(), cfg, cfg.vms[0], policy,  # type: ignore[arg-type]
                           core.Callbacks(note=notes.append))
    monkeypatch.setattr(core.Session, "running_target", lambda self: None)
    monkeypatch.setattr(core.Session, "warn_accel", lambda self: None)
    monkeypatch.setattr(core.Session, "conn", lambda self: "conn")
    monkeypatch.setattr(core.Session, "build", lambda self, quiet=False: _Report())
    monkeypatch.setattr(core.Session, "artifacts", lambda self, report: "art")
    monkeypatch.setattr(core.Session, "probed", lambda self, art: art)
    monkeypatch.setattr(core.Session, "execute", lambda self, plan: Outcome())
    monkeypatch.setattr(activation, "check_host", lambda conn, cfg, vm: None)
    monkeypatch.setattr(activation, "plan_up", plan_up)
    monkeypatch.setattr(core._Ready, "after", lambda self, art, result: TARGET)
    started = workflow.bring_up(session)
    assert started.target == TARGET
    assert asked["booted"] is restore and asked["recreate"] is False
    assert asked["attachments"] == cfg.attachments
    assert notes and notes[-1].startswith("VM box is up")


def test_a_running_vm_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config(vms=(Vm(name="box"),))
    session = core.Session(Env(), cfg, cfg.vms[0],  # type: ignore[arg-type]
                           core.Policy.of(Behavior(), core.Flags()))
    monkeypatch.setattr(core.Session, "running_target", lambda self: TARGET)
    monkeypatch.setattr(core.Session, "up", lambda self, opts=None: pytest.fail("up ran"))
    assert workflow.bring_up(session).target == TARGET


@dataclasses.dataclass
class _Report:
    built: tuple[str, ...] = ()
    substituted: tuple[str, ...] = ()
    states: dict[str, Any] = dataclasses.field(default_factory=dict)


def test_the_booted_state_is_saved_from_the_resolved_domain_xml(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The domain XML names store files as @store@/... (relocatable); the save must start
    from the XML libvirt gets (Artifacts.domain_text), not from the entry's file."""
    from aivm.activate import snapshot

    seen: list[str] = []

    def choose(conn: Any, store: Any, vm: Any, domain_xml: str, *,
               enabled: bool) -> snapshot.Choice:
        seen.append(domain_xml)
        return snapshot.Choice("boot", "not this time")

    class Art:
        overlay = Path("/o")

        def domain_text(self) -> str:
            return "<domain>/store/k/vmlinuz</domain>"

    cfg = Config(vms=(Vm(name="box"),))
    session = core.Session(Env(), cfg, cfg.vms[0],  # type: ignore[arg-type]
                           core.Policy.of(Behavior(), core.Flags()))
    monkeypatch.setattr(core.Session, "conn", lambda self: "conn")
    monkeypatch.setattr(activation, "running_target", lambda conn, vm: TARGET)
    monkeypatch.setattr(snapshot, "choose", choose)
    saved, target = core._Ready(session, core.UpOptions())._save_booted(
        Art(), TARGET)  # type: ignore[arg-type]
    assert seen == ["<domain>/store/k/vmlinuz</domain>"]
    assert saved == {"booted_state": None, "booted_state_error": "boot: not this time"}
    assert target == TARGET
