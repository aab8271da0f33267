"""The core facade under the CLI (BuildStream's `Stream`): click-free.

A `Session` is one VM of one loaded config, with one `Policy` (the command's flags over
the config's [behavior]) and the `Callbacks` through which the core talks to a person:
notes, warnings, build progress, the wait display and approval prompts. It owns the
libvirt connection, the build, plan execution and the `up` sequence, which `aivm up`,
`aivm ssh .` and `aivm code .` share (aivm/guest/workflow.py). A command parses its
options, makes one call here and renders what comes back (aivm/cli/).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aivm.activate.approve import Outcome
    from aivm.activate.approve import Policy as Approval
    from aivm.activate.approve import Ui as PromptUi
    from aivm.activate.firewall import Live, Probe
    from aivm.activate.live import Conn
    from aivm.activate.plan import Plan
    from aivm.activate.up import Artifacts
    from aivm.config.schema import Behavior, Config, Vm
    from aivm.graph.graph import Graph
    from aivm.graph.node import Registry
    from aivm.graph.scheduler import BuildReport
    from aivm.graph.statcache import StatCache
    from aivm.graph.store import Store
    from aivm.guest.ssh import Target


class Env(Protocol):
    """What the core needs from the process (aivm/cli/app.py's `App` is one)."""

    yes: bool
    dry_run: bool
    _cache: dict[str, Any]

    @property
    def notify(self) -> Callable[[str], None]: ...

    @property
    def config_path(self) -> Path: ...

    @property
    def connect_uri(self) -> str: ...

    def config(self, *, implicit: bool = False) -> Config: ...

    def store(self) -> Store: ...

    def graph(self, vms: tuple[str, ...] = ()) -> Graph: ...

    def registry(self) -> Registry: ...

    def statcache(self) -> StatCache: ...


class PhaseSink(Protocol):
    """The wait display: told each phase of the wait for ssh; `elapsed` when done."""

    elapsed: float

    def phase(self, name: str, seconds: float) -> None: ...


class _NoDisplay:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.elapsed = 0.0

    def phase(self, name: str, seconds: float) -> None:
        self.elapsed = time.monotonic() - self.started


def _silent(_text: str) -> None:
    pass


def no_display(_vm: str, _enabled: bool) -> AbstractContextManager[PhaseSink]:
    return nullcontext(_NoDisplay())


def _no_build(graph: Graph, quiet: bool) -> BuildReport:
    raise NotImplementedError("this session was opened without a build callback")


@dataclass(frozen=True)
class Callbacks:
    """How the core reaches a person; the CLI passes click/rich ones (aivm/cli/session.py).

    `note`: a line on stderr; `warn`: a warning; `alarm`: a loud one (a sensitive folder);
    `say`: a result line on stdout; `build(graph, quiet)`: build with a progress display;
    `waiting(vm, enabled)`: the wait display; `prompts`: approval's input/tty/output."""

    note: Callable[[str], None] = _silent
    warn: Callable[[str], None] = _silent
    alarm: Callable[[str], None] = _silent
    say: Callable[[str], None] = _silent
    build: Callable[[Graph, bool], BuildReport] = _no_build
    waiting: Callable[[str, bool], AbstractContextManager[PhaseSink]] = no_display
    prompts: PromptUi | None = None


@dataclass(frozen=True)
class Flags:
    """What the command line said about approval and safety."""

    yes: bool = False
    yes_sudo: bool = False
    dry_run: bool = False
    allow_sensitive: bool = False


@dataclass(frozen=True)
class Policy:
    """The one policy of a command: `approval` for plans and probes, the sensitive-folder
    override, and whether `up` may restore a saved booted state."""

    approval: Approval
    allow_sensitive: bool = False
    restore: bool = True

    @classmethod
    def of(cls, behavior: Behavior, flags: Flags) -> Policy:
        """Flags over the config's [behavior]; the only place the two are combined."""
        from aivm.activate import approve

        return cls(approve.Policy.of(behavior, yes=flags.yes, yes_sudo=flags.yes_sudo,
                                     dry_run=flags.dry_run),
                   allow_sensitive=flags.allow_sensitive, restore=behavior.restore_snapshots)

    @property
    def dry_run(self) -> bool:
        return self.approval.dry_run


def connect(env: Env) -> Conn:
    """The process's libvirt connection, opened on first use."""
    from aivm.activate import live

    if "conn" not in env._cache:
        env._cache["conn"] = live.connect(env.connect_uri)
    conn: Conn = env._cache["conn"]
    return conn


def policy_for(env: Env, flags: Flags) -> Policy:
    """The policy of a command that needs no VM: [behavior] defaults without a config."""
    from aivm.config.schema import Behavior
    from aivm.errors import ConfigError

    try:
        behavior = env.config().behavior
    except ConfigError:
        behavior = Behavior()
    return Policy.of(behavior, _with_global_yes(env, flags))


def _with_global_yes(env: Env, flags: Flags) -> Flags:
    import dataclasses

    return dataclasses.replace(flags, yes=flags.yes or env.yes)


def execute(plan: Plan, policy: Policy, ui: Callbacks) -> Outcome:
    """Preview, approve and run `plan`."""
    from aivm.activate import approve

    return approve.execute(plan, policy.approval, ui.prompts)


def read_firewall(probe: Probe, policy: Policy, ui: Callbacks) -> Live:
    """Phase one: the read-only root probe of a network's table, approved like a step."""
    from aivm.activate import approve

    return probe.read(approve.probe(probe.step(), policy.approval, ui.prompts))


@dataclass(frozen=True)
class UpOptions:
    recreate: bool = False
    timeout: float = 900.0
    wait: bool = True
    show_build: bool = True     # the build's progress display
    show_wait: bool = True      # the wait display and the "ready at" line


@dataclass(frozen=True)
class Up:
    """What `up` did: the --json report, the ssh target (None: dry run or not waited
    for), and in a dry run with stale nodes, those nodes and why (nothing else ran)."""

    report: dict[str, Any]
    target: Target | None = None
    would_build: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Session:
    env: Env
    cfg: Config
    vm: Vm
    policy: Policy
    ui: Callbacks = Callbacks()

    @classmethod
    def open(cls, env: Env, name: str | None, *, flags: Flags = Flags(),
             ui: Callbacks = Callbacks(), implicit: bool = False) -> Session:
        """The named VM (None or "." : the folder's, the active or the only one)."""
        from aivm.config.resolve import resolve_vm

        cfg = env.config(implicit=implicit)
        if name == ".":
            name = None
        vm = resolve_vm(cfg, name, Path.cwd())
        return cls(env, cfg, vm, Policy.of(cfg.behavior, _with_global_yes(env, flags)), ui)

    @property
    def dry_run(self) -> bool:
        return self.policy.dry_run

    def conn(self) -> Conn:
        if self.vm.host:  # a VM on another host: its libvirt over qemu+ssh (aivm/remote)
            from aivm.remote.session import connect as remote_connect

            return remote_connect(self.env, self.vm)
        return connect(self.env)

    def warn_accel(self) -> None:
        from aivm import model

        warning = model.accel_for(self.env, self.vm.accel).warning
        if warning:
            self.ui.warn(f"warning: {warning}")

    def build(self, *, quiet: bool = False) -> BuildReport:
        """Build the VM's stale nodes (a dry run builds nothing)."""
        return self.ui.build(self.env.graph((self.vm.name,)), quiet)

    def stale(self) -> dict[str, list[str]]:
        """The VM's nodes that are not built, with why."""
        from aivm.graph import scheduler

        env = self.env
        states = scheduler.resolve(env.graph((self.vm.name,)), env.registry(), env.store(),
                                   env.statcache())
        return {n: list(s.reasons) for n, s in states.items() if not s.cached}

    def artifacts(self, report: BuildReport) -> Artifacts:
        from aivm.activate.up import Artifacts

        network = self.cfg.network(self.vm.network)
        assert network is not None  # vm_graph already refused an unknown network
        return Artifacts(self.vm, network, report.states)

    def execute(self, plan: Plan) -> Outcome:
        return execute(plan, self.policy, self.ui)

    def read_firewall(self, probe: Probe) -> Live:
        return read_firewall(probe, self.policy, self.ui)

    def probed(self, art: Artifacts) -> Artifacts:
        """`art` with what the firewall probe saw, for `plan_up` / `plan_update`."""
        import dataclasses

        from aivm.activate.up import firewall_probe

        return dataclasses.replace(art, nft=self.read_firewall(firewall_probe(art)))

    def running_target(self) -> Target | None:
        """The ssh target of the VM when it runs, else None."""
        from aivm.activate.up import running_target

        return running_target(self.conn(), self.vm)

    def down(self, timeout: float) -> Outcome:
        """Stop the published ports, then ACPI shutdown (power off after `timeout`)."""
        from aivm.activate import live
        from aivm.activate import plan as plans
        from aivm.guest import ports

        name = self.vm.name
        return self.execute(plans.of(
            ports.stop_step(name, "the VM stops; `aivm up` starts them again"),
            live.stop_plan(self.conn(), name, timeout)))

    def restart(self) -> Outcome:
        from aivm.activate import live
        from aivm.activate import plan as plans
        from aivm.activate.plan import Step

        conn, name = self.conn(), self.vm.name
        return self.execute(plans.of(Step(
            f"Restart VM {name}", "asked to restart it",
            (live.shutdown_domain(conn, name), live.start_domain(conn, name)))))

    def destroy(self) -> Outcome:
        """Stop and undefine the VM, remove its disk and gc roots; forget its host keys and
        its ready record (the store is kept)."""
        from aivm.activate import teardown

        if self.vm.host:  # on another host: aivm/remote/session.py
            from aivm.remote.session import destroy_plan

            outcome = self.execute(destroy_plan(self))
        else:
            probe = teardown.firewall_probe(self.conn(), self.cfg, self.vm)
            seen = None if probe is None else self.read_firewall(probe)
            outcome = self.execute(teardown.destroy_plan(self.conn(), self.env.store(),
                                                         self.cfg, self.vm, seen))
        if not self.dry_run:
            from aivm.guest import ready, ssh

            ssh.forget_host_keys(self.vm.name)
            ready.forget(self.vm.name)
        return outcome

    def up(self, opts: UpOptions = UpOptions()) -> Up:
        """Build the VM's graph (stale nodes only), activate it (restoring its booted state
        when there is one and the policy allows), wait for ssh, save a first booted state."""
        started = time.monotonic()
        if self.vm.host:  # on another host: aivm/remote/session.py
            from aivm.remote.session import up as remote_up

            return remote_up(self, opts, started)
        self.warn_accel()
        from aivm.activate import up as activation

        activation.check_host(self.conn(), self.cfg, self.vm)  # before minutes of build
        if self.dry_run:
            stale = self.stale()
            if stale:
                return Up({"vm": self.vm.name, "dry_run": True, "would_build": stale,
                           "steps": [], "notes": [], "ran": []}, would_build=stale)
        report = self.build(quiet=not opts.show_build)
        built_at = time.monotonic()
        art = self.probed(self.artifacts(report))
        plan = activation.plan_up(self.conn(), self.env.store(), art, recreate=opts.recreate,
                                  attachments=self.cfg.attachments, booted=self.policy.restore,
                                  notify=self.ui.note)
        outcome = self.execute(plan)
        result: dict[str, Any] = {
            "vm": self.vm.name, "built": report.built, "dry_run": self.dry_run,
            "substituted": report.substituted, "steps": [s.title for s in plan.steps],
            "notes": list(plan.notes), "ran": [title for title, _ in outcome.ran],
            "build_seconds": built_at - started}
        target = None
        if not self.dry_run and opts.wait:
            target = _Ready(self, opts).after(art, result)
        result["seconds"] = time.monotonic() - started
        return Up(result, target)


@dataclass(frozen=True)
class _Ready:
    """The second half of `up`: the guest is ready (fast path, or the wait), its booted
    state saved when the plan booted it to save it; `result` gains what happened."""

    session: Session
    opts: UpOptions

    def after(self, art: Artifacts, result: dict[str, Any]) -> Target:
        from aivm.activate import snapshot

        session, name = self.session, self.session.vm.name
        fast = None if self.opts.recreate else self._still_ready()
        target, waited = fast or self._wait()
        result.update(waited)
        if snapshot.save_title(name) in result["ran"]:
            saved, target = self._save_booted(art, target)
            result.update(saved)
            _record_ready(session)  # the restored guest is the saved, ready one (new ID)
        started_here = [t for t in result["ran"] if t.startswith(f"Restore VM {name}")
                        or t == snapshot.save_title(name)]
        # this run's restore, by phase; empty when the VM booted (or fell back to a boot)
        result["restored"] = snapshot.last_restore(session.conn(), name) \
            if started_here else {}
        return target

    def _wait(self) -> tuple[Target, dict[str, Any]]:
        from aivm.activate import up as activation
        from aivm.config.to_graph import mac_address
        from aivm.guest import ssh

        session, name = self.session, self.session.vm.name
        if self.opts.recreate:
            ssh.forget_host_keys(name)
        with session.ui.waiting(name, self.opts.show_wait) as display:
            tgt = activation.wait_ready(session.conn(), session.vm, mac_address(name),
                                        timeout=self.opts.timeout, on_phase=display.phase)
        _after_ready(session, tgt)
        if self.opts.show_wait:
            session.ui.say(f"VM {name} is ready at {tgt.host}: `aivm ssh {name}`")
        return tgt, {"ip": tgt.host, "ready_seconds": display.elapsed}

    def _still_ready(self) -> tuple[Target, dict[str, Any]] | None:
        """The fast path: the domain still runs the run that was recorded ready (same UUID
        and ID, so no step restarted, restored or re-created it: aivm/guest/ready.py), so
        one ssh probe replaces the wait; None means wait. Steps that leave the guest running
        (gc roots, host binds) do not matter; one that cut its network makes the probe
        fail."""
        from aivm.errors import AivmError
        from aivm.guest import ready, ssh

        session, name = self.session, self.session.vm.name
        started, conn = time.monotonic(), session.conn()
        if not ready.still_ready(conn, name):
            return None
        try:
            tgt = session.running_target()
        except AivmError:
            return None
        if tgt is None or not ssh.check(tgt, timeout=10):
            return None
        _after_ready(session, tgt)
        if self.opts.show_wait:
            session.ui.say(f"VM {name} is ready at {tgt.host} (nothing to do; ready since it "
                           f"started): `aivm ssh {name}`")
        return tgt, {"ip": tgt.host, "ready_seconds": time.monotonic() - started,
                     "already_ready": True}

    def _save_booted(self, art: Artifacts, target: Target) -> tuple[dict[str, Any], Target]:
        """Save the freshly ready VM's booted state and restore it at once (snapshot.py)."""
        from aivm.activate import live, snapshot
        from aivm.activate import up as activation
        from aivm.config.to_graph import mac_address

        session = self.session
        conn, vm, store, ui = session.conn(), session.vm, session.env.store(), session.ui
        mac = mac_address(vm.name)
        ip = activation.running_target(conn, vm)
        ctx = snapshot.Context(conn, store, vm, art.overlay, art.domain_text(),
                               session.cfg.attachments, ui.note)
        choice = snapshot.choose(conn, store, vm, ctx.domain_xml, enabled=True)
        if choice.path != "boot-and-save":
            return {"booted_state": None, "booted_state_error": choice.line}, target
        try:
            saved = snapshot.save_and_restore(ctx, choice.key, ip.host if ip else "", mac,
                                              art.entry(f"{vm.name}.domain"))
        except snapshot.RestoreFailed as exc:
            ui.note(f"VM {vm.name}: booted state not saved ({exc})")
            if live.read_domain(conn, vm.name).active:
                return {"booted_state": None, "booted_state_error": str(exc)}, target
            snapshot.boot_fresh(ctx)
            tgt = activation.wait_ready(conn, vm, mac, timeout=self.opts.timeout,
                                        on_phase=lambda _p, _s: None)
            return {"booted_state": None, "booted_state_error": str(exc), "ip": tgt.host}, tgt
        _record_ready(session)  # the restored run is the ready one now
        if self.opts.show_wait:
            ui.note(f"VM {vm.name}: booted state saved ({saved.size / 2**20:.0f} MiB of "
                    f"memory, {saved.save_s:.1f} s) and restored ({saved.restore_s:.1f} s): "
                    "`aivm up --recreate` restores it")
        return {"booted_state": str(saved.entry), "save_seconds": saved.save_s,
                "restore_seconds": saved.restore_s}, target


def _record_ready(session: Session) -> None:
    from aivm.guest import ready

    ready.record(session.conn(), session.vm.name)


def _after_ready(session: Session, tgt: Target) -> None:
    """Record the ready run, the VM's ssh alias in aivm's ssh config, and start its
    published ports (aivm/guest/ports.py)."""
    from aivm.guest import ports, sshconf

    _record_ready(session)
    sshconf.record(tgt)
    for line in ports.ensure(session.vm, tgt):
        session.ui.note(line)
