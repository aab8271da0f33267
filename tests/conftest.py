"""Session-wide fixtures shared by the recipe and real-stack tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

RUN_STORE = "AIVM_TEST_RUN_STORE"   # set by the run's first process, inherited by xdist's


def pytest_configure(config: pytest.Config) -> None:
    """The process that runs the session names its store before xdist starts workers
    (they inherit the environment), so every worker of a run uses the same one."""
    if not hasattr(config, "workerinput"):
        os.environ.setdefault(RUN_STORE, f"/var/tmp/aivm-test-store-{os.getpid()}")


def shared_store_path() -> tuple[Path, bool]:
    """The run's store and whether the run owns it (removes it at its end): concurrent
    builds of one key in it wait on the key's lock, so the image is still built once."""
    keep = os.environ.get("AIVM_TEST_STORE")
    if keep:
        return Path(keep), False
    return Path(os.environ[RUN_STORE]), True


@pytest.fixture(scope="session")
def shared_store() -> Path:
    """One store for the whole run, so the Debian guest image (about a minute) is built once.

    It lives under /var/tmp, not pytest's 0700 tmp dir, because QEMU (as libvirt-qemu)
    must be able to enter it. `AIVM_TEST_STORE` reuses a store across runs (for development).
    The process that ran the session removes it (pytest_sessionfinish): with xdist, that is
    the controller, after every worker is done with it.
    """
    root, _owned = shared_store_path()
    root.parent.mkdir(parents=True, exist_ok=True)
    return root


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):   # an xdist worker: others may still use it
        return
    root, owned = shared_store_path()
    if owned:
        from aivm.graph.store import remove_tree

        remove_tree(root)


# the modules marked `shared_boot` (checked at collection): one xdist scope together
SHARED_BOOT = ("tests/e2e/test_booted_state.py", "tests/e2e/test_workplace.py",
               "tests/e2e/test_workplace2.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the modules marked `shared_boot` back to back, where the first of them would
    run, lowest mark argument first (test_booted_state.py, 0: its first `up` must boot and
    save): they restore one booted state (tests/e2e/aivm_user.py SharedBoot). Within a
    module, and for every other module, pytest's order is kept."""
    def rank(item: pytest.Item) -> int | None:
        mark = item.get_closest_marker("shared_boot")
        return None if mark is None else int(mark.args[0] if mark.args else 1)

    items[:] = grouped(items, rank)
    marked = {item.nodeid.split("::", 1)[0] for item in items if rank(item) is not None}
    if marked - set(SHARED_BOOT):
        raise pytest.UsageError(f"add {sorted(marked - set(SHARED_BOOT))} to SHARED_BOOT in "
                                "tests/conftest.py (make test keeps them in one worker)")


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """make test's real-stack run (`--dist loadscope`): whole modules to a worker (their
    stack, VM and module fixtures are the worker's), the `shared_boot` modules together
    as one unit, in the order above. (`--dist loadgroup` with xdist_group marks does not
    group under pytest 9 here: it spread a module's tests over both workers.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "shared_boot" if module in SHARED_BOOT else module

    return ModuleScheduling(config, log)


T = TypeVar("T")


def grouped(items: Sequence[T], rank: Callable[[T], int | None]) -> list[T]:
    """`items` with those of a rank moved together to where the first of them is, sorted
    by rank (stable); the others keep their order."""
    group = [item for item in items if rank(item) is not None]
    if not group:
        return list(items)
    first = next(n for n, item in enumerate(items) if rank(item) is not None)
    group.sort(key=lambda item: rank(item))  # type: ignore[arg-type, return-value]
    rest = [item for item in items if rank(item) is None]
    return rest[:first] + group + rest[first:]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Wall time per test module (setup, call and teardown), slowest first: the suite's budget."""
    per_module: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                module = report.nodeid.split("::", 1)[0]
                per_module[module] = per_module.get(module, 0.0) + report.duration
    if not per_module:
        return
    terminalreporter.write_sep("-", "time per test module")
    for module, seconds in sorted(per_module.items(), key=lambda kv: -kv[1])[:15]:
        terminalreporter.write_line(f"{seconds:8.1f} s  {module}")
    terminalreporter.write_line(f"{sum(per_module.values()):8.1f} s  total")
