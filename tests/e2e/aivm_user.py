"""A person using the aivm CLI against the real stack: own HOME, own config, shared store.

Every `aivm` runs as a subprocess with the stack's environment (AIVM_NETNS,
the libvirt URI, AIVM_STATE), so ssh and nft run inside the test namespace.
"""

from __future__ import annotations

import json
import os
import re
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

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AIVM_"))}
        env.update(self.stack.env())
        env.update(HOME=str(self.home), AIVM_STORE=str(self.store), PYTHONPATH=str(ROOT))
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


def debian_user(stack: RealStack, home: Path, store: Path, *, memory_mib: int = 1024) -> AivmUser:
    """`aivm config init --defaults`, then the small Debian guest as the image."""
    home.mkdir(parents=True, exist_ok=True)
    user = AivmUser(stack, home, store)
    user.run("config", "init", "--defaults")
    user.set_vm_key("image", '"debian"')
    user.set_vm_key("memory_mib", str(memory_mib))
    user.set_vm_key("cpus", "1")
    user.edit(lambda t: t + f'\n[[images]]\nname = "debian"\nsource = "debootstrap"\n'
                            f'mirror = "{host_mirror()}"\n')
    return user
