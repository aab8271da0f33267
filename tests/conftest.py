"""Session-wide fixtures shared by the recipe and real-stack tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_store() -> Iterator[Path]:
    """One store for the whole run, so the Debian guest image (about a minute) is built once.

    It lives under /var/tmp, not pytest's 0700 tmp dir, because QEMU (as libvirt-qemu)
    must be able to enter it. `AIVM_TEST_STORE` reuses a store across runs (for development).
    """
    keep = os.environ.get("AIVM_TEST_STORE")
    root = Path(keep) if keep else Path(f"/var/tmp/aivm-test-store-{os.getpid()}")
    root.parent.mkdir(parents=True, exist_ok=True)
    yield root
    if not keep and root.exists():
        from aivm.graph.store import remove_tree

        remove_tree(root)
        shutil.rmtree(root, ignore_errors=True)


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
