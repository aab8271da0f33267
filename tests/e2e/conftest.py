"""Fixtures for the real-stack tests (root, QEMU, libvirtd in a network namespace).

`realstack` is one `RealStack` per test module: a module's VMs, networks and nft
tables (a firewall it tampered with, an egress policy it left) go with its stack,
so no module sees another's leftovers; starting one costs a few seconds (libvirt's
QEMU probe is cached), while the image store stays shared for the session
(tests/conftest.py). Tests that must watch a stack come and go (the harness's own
smoke test) make their own and request `realstack_host` for the skip check only.
When a test fails, the tails of every live stack's console and QEMU logs are
attached to its report.

`private_store` is a module's own store (every module but the `shared_boot` ones).

`shared_boot` is the run's one ssh key pair and state folder for the modules that share
one booted state (tests/e2e/aivm_user.py SharedBoot; marked `shared_boot`, run back to
back by tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.aivm_user import SharedBoot
from tests.e2e.harness import ACTIVE, RealStack, unavailable_reason


@pytest.fixture(scope="session")
def realstack_host() -> None:
    """Skip unless this machine can run a real stack (root, /dev/kvm, QEMU, libvirtd)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"real stack unavailable: {reason}")


@pytest.fixture(scope="session")
def shared_boot(realstack_host: None) -> Iterator[SharedBoot]:
    """The run's key pair and state folder, new each run (so a kept AIVM_TEST_STORE never
    hands a later run an earlier run's booted state), under /var/tmp for QEMU."""
    shared = SharedBoot.create(Path(f"/var/tmp/aivm-shared-boot-{os.getpid()}"))
    yield shared
    shutil.rmtree(shared.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_store(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A store of the module's own, for every module whose VM is not the run's shared one.
    A store's gc roots are per VM name, so two modules side by side (make test runs two at
    a time) with a VM of one name on one store would replace each other's roots; and
    collecting the run's store would delete what other modules left unrooted for later
    (the shared booted state, between the `shared_boot` modules). Under /var/tmp: QEMU
    enters it. Seed it with tests/e2e/aivm_user.py seed_image (the run's image)."""
    root = Path(f"/var/tmp/aivm-store-{os.getpid()}-{request.module.__name__.split('.')[-1]}")
    yield root
    from aivm.graph.store import remove_tree

    remove_tree(root)


@pytest.fixture(scope="module")
def realstack(realstack_host: None) -> Iterator[RealStack]:
    with RealStack() as stack:
        yield stack


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        for stack in ACTIVE:
            report.sections.append((f"real stack {stack.netns} logs",
                                    stack.failure_logs(echo=False)))


@pytest.fixture
def realstack_env(realstack: RealStack, monkeypatch: pytest.MonkeyPatch) -> RealStack:
    """The session stack, with its env() (AIVM_NETNS, libvirt URI, AIVM_STATE) set in-process."""
    for name, value in realstack.env().items():
        monkeypatch.setenv(name, value)
    return realstack
