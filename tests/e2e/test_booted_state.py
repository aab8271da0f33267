"""Booted-state entries on the real stack: one fresh boot for the module, then restores.

The first `aivm up` boots the VM without its virtiofs export, saves its booted state
once ready (disk layer + memory state in the store), restores it and hot-plugs the
export. Then: `up --recreate` restores instead of booting (timed), the guest clock is
the host's, the RNG is reseeded and differs across two restores of one state, a
shared-root attachment is mounted after a restore, the address survives `destroy`
(network and leases gone), gc keeps the rooted state and shows its size, and a corrupt
state file falls back to a normal boot with a one-line reason (and the file is put
back afterwards).

Its VM is the run's shared one (tests/e2e/aivm_user.py SharedBoot): the modules marked
`shared_boot` run right after this one and restore the state it saved instead of booting.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.aivm_user import AivmUser, SharedBoot, debian_user
from tests.e2e.harness import RealStack

# rank 0: the first of the modules sharing one booted state, so its first `up` boots and saves
pytestmark = [pytest.mark.realstack, pytest.mark.slow, pytest.mark.shared_boot(0)]

VM = "aivm-2404"
TIMINGS: dict[str, float] = {}
RESTORE = f"Restore VM {VM} from its booted state"


@pytest.fixture(scope="module")
def user(realstack: RealStack, shared_store: Path, shared_boot: SharedBoot,
         tmp_path_factory) -> Iterator[AivmUser]:
    person = debian_user(realstack, tmp_path_factory.mktemp("home"), shared_store,
                         shared=shared_boot)
    started = time.monotonic()
    first = person.json("up", "--yes")
    TIMINGS["fresh boot + save"] = time.monotonic() - started
    person.first = first  # type: ignore[attr-defined]
    yield person
    person.run("detach", str(FOLDER), "--yes", check=False)
    person.run("destroy", VM, "--yes", check=False)
    shutil.rmtree(FOLDER, ignore_errors=True)  # left by a test that failed before its detach
    shared_boot.clear()
    print("\n".join(person.log))
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


FOLDER = Path(f"/var/tmp/aivm-booted-{os.getpid()}")


def entry_of(user: AivmUser) -> Path:
    return Path(user.first["booted_state"])  # type: ignore[attr-defined]


def guest(user: AivmUser, script: str) -> str:
    return user.ssh(VM, "sh", "-c", f"'{script}'").stdout


def recreate(user: AivmUser, *args: str) -> tuple[dict[str, object], float, str]:
    started = time.monotonic()
    proc = user.run("up", "--recreate", "--yes", "--json", *args)
    return json.loads(proc.stdout), time.monotonic() - started, proc.stderr


def test_first_up_saves_a_private_booted_state(user: AivmUser) -> None:
    first = user.first  # type: ignore[attr-defined]
    assert first.get("booted_state"), first
    entry = entry_of(user)
    state = entry / "memory.state"
    assert state.stat().st_mode & 0o777 == 0o400
    assert json.loads((entry / "manifest.json").read_text())["kind"] == "booted-state"
    TIMINGS["save"] = float(first["save_seconds"])
    TIMINGS["restore after save"] = float(first["restore_seconds"])
    assert "restore: from " + entry.name in user.run("status", VM, "--detail").stdout


def test_shared_root_attachment_is_mounted_after_a_restore(user: AivmUser) -> None:
    # before the clock test: by then the saved state is old enough to need no sleep
    FOLDER.mkdir(mode=0o755, exist_ok=True)
    (FOLDER / "from-host.txt").write_text("hello across a restore\n")
    user.run("attach", str(FOLDER), "--vm", VM, "--mode", "shared-root", "--yes")
    result, _took, stderr = recreate(user)
    assert RESTORE in result["ran"] and result["restored"], (result, stderr)
    assert guest(user, f"cat {FOLDER}/from-host.txt") == "hello across a restore\n"
    user.run("detach", str(FOLDER), "--yes")
    shutil.rmtree(FOLDER, ignore_errors=True)


def test_recreate_restores_with_the_host_clock_and_a_reseeded_rng(user: AivmUser) -> None:
    saved = json.loads((entry_of(user) / "booted.json").read_text())["saved"]
    from datetime import datetime

    age = time.time() - datetime.fromisoformat(saved).timestamp()
    if age < 20:
        time.sleep(20 - age)  # the guest clock would be >= 20 s behind without the step
    draws = []
    for n in range(2):
        result, took, stderr = recreate(user)
        TIMINGS[f"up --recreate (restore {n + 1})"] = took
        assert RESTORE in result["ran"] and result["restored"], (result, stderr)
        TIMINGS[f"restore {n + 1}: libvirt restore"] = result["restored"]["restore_s"]
        TIMINGS[f"restore {n + 1}: restore -> ssh"] = result["restored"]["restore_to_ssh_s"]
        assert "booted state not used" not in stderr
        before = time.time()
        out = guest(user, "date +%s.%N; cat /run/aivm-reseed; "
                          "head -c 32 /dev/urandom | od -An -tx1 | tr -d \" \\n\"")
        after = time.time()
        lines = out.split()
        # the guest read its clock between `before` and `after`: within 2 s of the host's
        assert before - 2.0 < float(lines[0]) < after + 2.0, (before, lines[0], after)
        assert len(out.splitlines()) == 3  # exactly one reseed since this restore
        draws.append(lines[-1])
    assert len(draws[0]) == 64 and draws[0] != draws[1]


def test_destroy_then_up_restores_and_keeps_the_address(user: AivmUser,
                                                        realstack: RealStack) -> None:
    ip = json.loads((entry_of(user) / "booted.json").read_text())["ip"]
    user.run("destroy", VM, "--yes")
    assert not [n for n in realstack.connect().listNetworks()]  # network and leases gone
    started = time.monotonic()
    result = user.json("up", "--yes")
    TIMINGS["destroy && up (restore)"] = time.monotonic() - started
    assert RESTORE in result["ran"] and result["restored"], result
    assert result["ip"] == ip
    assert guest(user, "hostname -I").split()[0] == ip


def test_gc_keeps_the_rooted_state_and_shows_its_size(user: AivmUser) -> None:
    entry = entry_of(user)
    out = user.run("gc", "--dry-run").stdout
    assert f"dead {entry}" not in out
    assert f"booted state {entry.name}" in out and "MiB" in out.split(entry.name)[1][:40]


def test_ssh_dot_on_a_destroyed_vm_restores_like_up(user: AivmUser) -> None:
    """`aivm ssh .` takes `aivm up`'s sequence (aivm/session.py): a destroyed VM with a
    booted state is restored, not booted (before the facade it always booted). It runs
    before the corrupt-state test: after that one, a full run here found the state's
    header still zeroed and the restore fell back to a boot."""
    user.run("destroy", VM, "--yes")
    FOLDER.mkdir(mode=0o755, exist_ok=True)
    (FOLDER / "marker.txt").write_text("restored, not booted\n")
    started = time.monotonic()
    proc = user.run("ssh", ".", "--yes", "--", "cat", "marker.txt", cwd=FOLDER)
    TIMINGS["destroy && ssh . (restore)"] = time.monotonic() - started
    assert proc.stdout == "restored, not booted\n", proc.stderr
    assert RESTORE in proc.stderr and f"Start VM {VM}" not in proc.stderr, proc.stderr
    assert "booted state not used" not in proc.stderr, proc.stderr  # no fallback boot
    user.run("detach", str(FOLDER), "--yes")


@contextlib.contextmanager
def overwritten(path: Path, data: bytes) -> Iterator[None]:
    """`data` over the start of `path` (a 0400 store file), then the original bytes back:
    the later modules restore this entry (marked `shared_boot`)."""
    def write(chunk: bytes) -> None:
        os.chmod(path, 0o600)
        with path.open("r+b") as f:
            f.write(chunk)
        os.chmod(path, 0o400)   # as saved: only the bytes differ

    with path.open("rb") as f:
        original = f.read(len(data))
    write(data)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            write(original)


def test_a_corrupt_state_boots_normally_and_says_why(user: AivmUser) -> None:
    state = entry_of(user) / "memory.state"
    with overwritten(state, b"\0" * 4096):  # libvirt's save header: the image is unusable
        result, took, stderr = recreate(user)
    TIMINGS["up --recreate (fallback boot)"] = took
    reasons = [line for line in stderr.splitlines() if "booted state not used" in line]
    assert len(reasons) == 1 and "booting normally" in reasons[0], stderr
    assert result["restored"] == {}
    assert guest(user, "echo ok").strip() == "ok"
    assert guest(user, "test -e /run/aivm-reseed || echo fresh").strip() == "fresh"
