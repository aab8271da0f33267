"""gc while `aivm up` waits at its prompt, on the real stack (issue 12, item 8).

`aivm up --no-wait` runs on a pseudo-terminal (so it asks); at its first
prompt a second process runs `aivm gc --yes`; then every step is approved.
No boot is waited for: define + start + destroy. libvirtd, nft and QEMU run
in the stack's network namespace (tests/e2e/harness.py).
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aivm.activate import disk
from aivm.activate.approve import Approver
from aivm.graph.store import MANIFEST, Store
from tests.e2e.aivm_user import AIVM, AivmUser, debian_user, seed_image
from tests.e2e.harness import RealStack

pytestmark = [pytest.mark.realstack, pytest.mark.slow]

VM = "aivm-2404"


@pytest.fixture(scope="module")
def user(realstack: RealStack, shared_store: Path, private_store: Path,
         tmp_path_factory) -> Iterator[AivmUser]:
    # a store of its own: the test collects it (the run's image copied in)
    person = debian_user(realstack, tmp_path_factory.mktemp("home"), private_store)
    seed_image(person, shared_store)
    person.set_vm_key("memory_mib", "1000")  # a domain entry of its own: built by this test
    yield person
    person.run("destroy", VM, "--yes", check=False)
    print("\n".join(person.log))


def _up_on_a_terminal(user: AivmUser, at_prompt, timeout: float = 1500) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """`aivm up --no-wait` on a pty; `at_prompt()` runs at each prompt, then "a" is sent."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*AIVM, "up", VM, "--no-wait"], env=user.env, cwd=user.home,
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        seen += data
        if seen.rstrip().endswith(Approver.PROMPT.rstrip().encode()):
            at_prompt()
            os.write(master, b"a\n")
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, seen.decode(errors="replace")


def test_gc_while_up_waits_at_its_prompt(user: AivmUser, realstack: RealStack) -> None:
    store = Store(user.store)
    gcs: list[dict[str, list[str]]] = []

    def collect() -> None:
        if not gcs:
            gcs.append(user.json("gc", "--yes"))

    code, output = _up_on_a_terminal(user, collect)
    assert code == 0, output
    assert gcs, f"up never asked:\n{output}"
    mine = {n: Path(s["path"]) for n, s in user.json("build")["nodes"].items()}
    assert not {str(p) for p in mine.values()} & set(gcs[0]["dead"]), gcs[0]["dead"]
    assert all((p / MANIFEST).is_file() for p in mine.values())
    assert set(store.vm_roots(VM).values()) >= set(mine.values())
    disk_file = Path(realstack.env()["AIVM_STATE"]) / VM / "disk.qcow2"
    backing = disk.backing_of(disk_file)
    assert backing is not None and backing.is_file()
    assert realstack.connect().lookupByName(VM).isActive()

    user.run("destroy", VM, "--yes")
    dead = set(user.json("gc", "--dry-run")["dead"])  # only the VM's roots kept them
    assert str(mine[f"{VM}.domain"]) in dead and str(mine[f"{VM}.overlay"]) in dead
    assert re.search(r"\[\d+/\d+\] Define VM", output)
