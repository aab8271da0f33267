"""Build a small Debian guest, boot it, use it over ssh, re-create it from the cache.

Everything runs inside a private network namespace with its own libvirtd
(tests/e2e/harness.py), so no packet reaches the host's own networks. The
demo store (/var/tmp/aivm-demo/store) is kept, so a second `make demo` skips
the image build. `KEEP=1 make demo` leaves the VM and the namespace running
and prints how to reach them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.aivm_user import AivmUser, debian_user
from tests.e2e.harness import RealStack, unavailable_reason

WORK = Path("/var/tmp/aivm-demo")
VM = "aivm-2404"


def banner(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(user: AivmUser, *args: str) -> float:
    """Run `aivm ARGS` with its output on the terminal; return the seconds it took."""
    print(f"$ aivm {' '.join(args)}", flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "aivm", *args], env=user.env, cwd=user.home,
                   check=True, stdin=subprocess.DEVNULL)
    return time.monotonic() - started


def run_demo(stack: RealStack, timings: dict[str, float]) -> AivmUser:
    home = WORK / "home"
    if home.exists():
        subprocess.run(["rm", "-rf", str(home)], check=True)
    banner("a fresh user: aivm config init --defaults, then the small Debian guest as image")
    user = debian_user(stack, home, WORK / "store")
    print(user.config.read_text())
    banner("build the VM's graph into the content-addressed store")
    timings["build (image, overlay, seed, network, firewall, domain)"] = show(user, "build")
    timings["build again (nothing to do)"] = show(user, "build")
    show(user, "graph")
    banner("activate it on libvirt and wait for ssh")
    timings["up to ssh-ready"] = show(user, "up", "--yes")
    banner("use the guest")
    show(user, "ssh", VM, "--", "sh", "-c", "'uname -a; id; cloud-init status'")
    show(user, "status", "--sudo")
    banner("re-create the VM from the cache: a fresh disk, no download, no re-render")
    timings["re-create to ssh-ready"] = show(user, "up", "--recreate", "--yes")
    show(user, "status")
    return user


def main() -> int:
    reason = unavailable_reason()
    if reason:
        print(f"demo: cannot run here: {reason}", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    WORK.chmod(0o755)
    keep = os.environ.get("KEEP") == "1"
    timings: dict[str, float] = {}
    stack = RealStack(keep_work=keep)
    stack.start()
    try:
        user = run_demo(stack, timings)
        banner("timings on this machine")
        for what, seconds in timings.items():
            print(f"  {what:<55} {seconds:6.1f} s")
        if keep:
            banner("KEEP=1: the VM stays up")
            print("  reach it with:")
            for k, v in user.env.items():
                if k.startswith("AIVM_") or k in ("HOME",):
                    print(f"    export {k}='{v}'")
            print(f"    {sys.executable} -m aivm ssh {VM}")
            print(f"  remove everything later: ip netns pids {stack.netns} | xargs -r kill; "
                  f"ip netns delete {stack.netns}")
            return 0
        banner("tear down")
        show(user, "destroy", VM, "--yes")
    finally:
        if not keep:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
