"""A person using the aivm CLI against the real stack: own HOME, own config, shared store.

Every `aivm` runs as a subprocess with the stack's environment (AIVM_NETNS,
the libvirt URI, AIVM_STATE), so ssh and nft run inside the test namespace.

`SharedBoot`: modules that only need a ready guest share one boot per run. A booted
state is keyed by the VM's domain key, which covers the ssh key (in the seed) and the
state folder (the disk and console paths in the domain XML); a user made with
`debian_user(..., shared=...)` gets the run's key pair, the run's state folder and uid
1234, so every such module's VM has one domain key: the first of them to run boots and
saves the state, the others restore it (tests/conftest.py runs them back to back, so no
module's `gc` removes the state between them). Each module still has its own stack
(network, nft, daemons) and its own VM, removed at its end; the state folder of the VM
is emptied before each module's first `up`, so nothing a failed module left is reused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import RealStack
from tests.recipes.helpers import host_mirror

AIVM = [sys.executable, "-m", "aivm"]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class AivmUser:
    stack: RealStack
    home: Path
    store: Path
    log: list[str] = field(default_factory=list)
    state: Path | None = None     # AIVM_STATE instead of the stack's (a SharedBoot's)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AIVM_"))}
        env.update(self.stack.env())
        env.update(HOME=str(self.home), AIVM_STORE=str(self.store), PYTHONPATH=str(ROOT))
        if self.state is not None:
            env["AIVM_STATE"] = str(self.state)
        return env

    @property
    def config(self) -> Path:
        return self.home / ".config" / "aivm" / "config.toml"

    def run(self, *args: str, check: bool = True, timeout: float = 1500,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        proc = subprocess.run([*AIVM, *args], env=self.env, text=True, capture_output=True,
                              timeout=timeout, cwd=cwd or self.home, stdin=subprocess.DEVNULL)
        took = time.monotonic() - started
        self.log.append(f"$ aivm {' '.join(args)}  ({took:.1f} s, exit {proc.returncode})\n"
                        f"{proc.stdout}{proc.stderr}")
        if check and proc.returncode != 0:
            raise AssertionError(f"aivm {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.run(*args, "--json", **kw).stdout)

    def edit(self, change: Callable[[str], str]) -> None:
        self.config.write_text(change(self.config.read_text()))

    def set_vm_key(self, key: str, value: str) -> None:
        """Set a key in [defaults] (every VM inherits it)."""
        self.edit(lambda t: re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", t, count=1)
                  if re.search(rf"(?m)^{key} = ", t)
                  else t.replace("[defaults]\n", f"[defaults]\n{key} = {value}\n", 1))

    def ssh(self, vm: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("ssh", vm, "--", *command, check=check, timeout=300)


SHARED_UID = 1234


@dataclass(frozen=True)
class SharedBoot:
    """One ssh key pair and one state folder for the run (see the module docstring)."""

    root: Path

    @property
    def key(self) -> Path:
        # the name `config init` gives the key it creates: a test may plant a fake
        # ~/.ssh/id_ed25519 (a secret the guest must not reach) without touching this one
        return self.root / "key" / "aivm_ed25519"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @classmethod
    def create(cls, root: Path) -> SharedBoot:
        shared = cls(root)
        root.mkdir(mode=0o755)             # QEMU (libvirt-qemu) enters the state folder
        shared.state.mkdir(mode=0o755)
        shared.key.parent.mkdir(mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aivm-e2e-shared",
                        "-f", str(shared.key)], check=True, capture_output=True)
        return shared

    def give_key(self, home: Path) -> None:
        """The run's key pair as the user's aivm key (`config init` picks it)."""
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for src in (self.key, self.key.with_suffix(".pub")):
            shutil.copy2(src, ssh_dir / src.name)

    def clear(self) -> None:
        """Empty the state folder: what an earlier module left (a disk, a console log) is
        never used by the next one. Modules run one at a time, each on its own stack."""
        for child in self.state.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def first_path(report: dict[str, Any]) -> str:
    """How `aivm up --json` started the VM: restored a saved state, booted and saved, booted."""
    if any(step.startswith("Restore VM ") for step in report.get("ran", [])):
        return "restored"
    return "booted and saved" if report.get("booted_state") else "booted"


def debian_user(stack: RealStack, home: Path, store: Path, *, memory_mib: int = 1024,
                shared: SharedBoot | None = None) -> AivmUser:
    """`aivm config init --defaults`, then the small Debian guest as the image. With
    `shared`, the VM is the run's shared one (key, state folder, uid 1234)."""
    home.mkdir(parents=True, exist_ok=True)
    user = AivmUser(stack, home, store)
    if shared is not None:
        shared.clear()
        shared.give_key(home)
        user.state = shared.state
    user.run("config", "init", "--defaults")
    user.set_vm_key("image", '"debian"')
    user.set_vm_key("memory_mib", str(memory_mib))
    user.set_vm_key("cpus", "1")
    user.edit(lambda t: t + f'\n[[images]]\nname = "debian"\nsource = "debootstrap"\n'
                            f'mirror = "{host_mirror()}"\n')
    if shared is not None:
        user.set_vm_key("uid", str(SHARED_UID))
    return user


def seed_image(user: AivmUser, shared_store: Path) -> None:
    """The run's Debian image entry (built in the shared store when it is not there yet)
    copied into the user's own store: an entry is a self-contained directory, so a module
    with a private store (tests/e2e/conftest.py private_store) builds no image of its own."""
    image = Path(AivmUser(user.stack, user.home, shared_store).json("build")["nodes"][
        "image.debian"]["path"])
    user.store.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(image), str(user.store)], check=True)
