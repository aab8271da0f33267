"""Boot time of the debootstrap guest aivm builds: `systemd-analyze` after a fresh boot.

`python -m bench.boot_time [STORE]` boots the bench's Debian guest once in a private
stack (booted states off, so it really boots), waits for ready, and prints the guest's
own view: kernel + userspace time, the slowest units, cloud-init's stages, and aivm's
time to ready. Compare two images by running it against two stores.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.aivm_user import AivmUser, debian_user
from tests.e2e.harness import RealStack

VM = "aivm-2404"


def measure(stack: RealStack, store: Path, home: Path) -> dict[str, Any]:
    user = debian_user(stack, home, store)
    user.edit(lambda t: t.replace("[behavior]\n", "[behavior]\nrestore_snapshots = false\n", 1))
    started = time.monotonic()
    report = user.json("up", "--yes")
    out: dict[str, Any] = {"up_s": time.monotonic() - started,
                           "ready_s": report.get("ready_seconds")}
    try:
        out["systemd_analyze"] = _guest(user, "systemd-analyze time").strip()
        out["blame"] = _guest(user, "systemd-analyze blame --no-pager | head -n 8").splitlines()
        out["masked"] = _guest(user, "systemctl list-unit-files --state=masked --no-legend "
                                     "--no-pager | cut -d\" \" -f1").split()
    finally:
        user.run("destroy", VM, "--yes", check=False)
    return out


def _guest(user: AivmUser, script: str) -> str:
    return user.ssh(VM, "sh", "-c", f"'{script}'", check=False).stdout


def main() -> int:
    store = Path(sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/aivm-bench/boot/store")
    home = Path(f"/var/tmp/aivm-bench/boot/home-{time.monotonic_ns()}")
    store.parent.mkdir(parents=True, exist_ok=True)
    with RealStack() as stack:
        print(json.dumps(measure(stack, store, home), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
