"""aivm on the real stack: cold create, warm create, re-create, destroy+up cycles.

Runs inside a private network namespace (tests/e2e/harness.py) like the
end-to-end tests. `ready_seconds` is what `aivm up --json` measured from the
domain start to ssh + cloud-init ready; aivm's own overhead is the rest.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.e2e.aivm_user import AivmUser, debian_user
from tests.e2e.harness import RealStack

WORK = Path("/var/tmp/aivm-bench")
VM = "aivm-2404"


def _user(stack: RealStack, name: str, *, fresh_store: bool) -> AivmUser:
    base = WORK / name
    subprocess.run(["rm", "-rf", str(base / "home")], check=True)
    if fresh_store:
        subprocess.run(["rm", "-rf", str(base / "store")], check=True)
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    return debian_user(stack, base / "home", base / "store")


def _up(user: AivmUser, *args: str) -> dict[str, Any]:
    started = time.monotonic()
    report: dict[str, Any] = user.json("up", "--yes", *args)
    report["wall_s"] = time.monotonic() - started
    report["overhead_s"] = report["wall_s"] - report.get("ready_seconds", 0.0)
    return report


def lifecycle(stack: RealStack, reps: int = 3) -> dict[str, Any]:
    user = _user(stack, "vm", fresh_store=True)
    cold = _up(user)
    warm, recreate, cycle = [], [], []
    for _ in range(reps):
        recreate.append(_up(user, "--recreate"))   # restores the booted state saved by `cold`
    fresh = _fresh_boot_recreates(user, reps)
    for _ in range(reps):
        started = time.monotonic()
        user.run("destroy", VM, "--yes")
        up = _up(user)
        cycle.append(time.monotonic() - started)
        warm.append(up)
    user.run("destroy", VM, "--yes")
    med = statistics.median
    return {
        "cold_create_s": cold["wall_s"], "cold_build_s": cold["build_seconds"],
        "cold_ready_s": cold["ready_seconds"],
        "warm_create_s": med(r["wall_s"] for r in warm),
        "warm_overhead_s": med(r["overhead_s"] for r in warm),
        "recreate_s": med(r["wall_s"] for r in recreate),
        "recreate_overhead_s": med(r["overhead_s"] for r in recreate),
        "recreate_built": sorted({n for r in recreate for n in r["built"]}),
        "destroy_up_cycle_s": med(cycle), "reps": reps,
        "booted_state_saved": bool(cold.get("booted_state")),
        "recreate_restored": all(_restored(r) for r in recreate),
        "recreate_fresh_boot_s": med(r["wall_s"] for r in fresh),
    }


def _restored(report: dict[str, Any]) -> bool:
    return any(t.startswith("Restore VM ") for t in report.get("ran", ()))


def _fresh_boot_recreates(user: AivmUser, reps: int) -> list[dict[str, Any]]:
    """`up --recreate` with booted states off ([behavior] restore_snapshots = false): the
    fresh boot the restore is compared with, in the same run."""
    original = user.config.read_text()
    user.edit(lambda t: t.replace("[behavior]\n", "[behavior]\nrestore_snapshots = false\n", 1))
    try:
        return [_up(user, "--recreate") for _ in range(reps)]
    finally:
        user.config.write_text(original)
