"""Three packages on every re-create, or baked once into a provision layer.

Both cases re-create the VM with booted states off (`restore_snapshots = false`), so
the comparison is about the layer alone, both to ready:

- with the layer: a `[[provisions]]` entry bakes hello, tree and figlet (real .deb files
  from a flat apt repository served on the stack namespace's loopback, as
  tests/e2e/test_provision.py does); `aivm up --recreate` boots a fresh disk on it and
  installs nothing.
- without it: the VM sits on the plain image; after `aivm up --recreate` the same three
  .deb files are copied in (`aivm cp`) and installed with apt, which is what a per-boot
  package step costs (a seed's `packages:` also downloads them from a mirror).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from bench.timing import timed
from tests.e2e.aivm_user import AivmUser, debian_user
from tests.e2e.aptrepo import flat_repo
from tests.e2e.harness import RealStack
from tests.e2e.netns import stop_pid
from tests.recipes.test_provision_fence import PORT, start_http

WORK = Path("/var/tmp/aivm-bench")
VM = "aivm-2404"
PACKAGES = ("hello", "tree", "figlet")     # each depends on libc6 only


def three_packages(stack: RealStack, store: Path) -> dict[str, Any]:
    """Re-create to ready with the layer against without it; `store` may hold the image."""
    repo = _repo(WORK / "prov" / "repo")
    pid = start_http(stack.netns, repo, stack.work / "bench-mirror.log")
    try:
        user = _user(stack, store)
        with_layer = _with_layer(user, f"deb [trusted=yes] http://127.0.0.1:{PORT}/ ./")
        without = _without_layer(user, repo)
    finally:
        stop_pid(pid, wait_s=5.0)
    return {"recreate_with_layer_s": with_layer, "recreate_and_install_s": without,
            "packages": list(PACKAGES)}


def _repo(path: Path) -> Path:
    subprocess.run(["rm", "-rf", str(path)], check=True)
    path.mkdir(parents=True)
    return flat_repo(path, PACKAGES)


def _user(stack: RealStack, store: Path) -> AivmUser:
    home = WORK / "prov" / "home"
    subprocess.run(["rm", "-rf", str(home)], check=True)
    user = debian_user(stack, home, store)
    user.edit(lambda t: t.replace("[behavior]\n", "[behavior]\nrestore_snapshots = false\n", 1))
    return user


def _with_layer(user: AivmUser, source: str) -> float:
    user.edit(lambda t: t + '\n[[provisions]]\nname = "tools"\nbase = "debian"\n'
                            f'packages = {list(PACKAGES)!r}\n'
                            f'apt_sources = ["{source}"]\n'.replace("'", '"'))
    user.set_vm_key("image", '"tools"')
    user.json("up", "--yes")                 # builds the layer (one builder boot) and boots
    took = timed(lambda: user.json("up", "--recreate", "--yes"))
    assert "Hello, world!" in user.ssh(VM, "hello").stdout, "the layer lacks its packages"
    return took


def _without_layer(user: AivmUser, repo: Path) -> float:
    user.set_vm_key("image", '"debian"')   # the re-create below boots the plain image
    debs = sorted(str(p) for p in repo.glob("*.deb"))

    def recreate_and_install() -> None:
        user.json("up", "--recreate", "--yes")
        user.run("cp", *debs, f"{VM}:/tmp/")
        names = " ".join(f"/tmp/{Path(d).name}" for d in debs)
        user.ssh(VM, f"sudo apt-get install -y -q {names}")

    took = timed(recreate_and_install)
    user.run("destroy", VM, "--yes")
    return took
