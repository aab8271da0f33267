"""aivm's own ssh config file: one `Host aivm-<vm>` block per VM.

git remotes (`aivm-<vm>:<path>`) and VS Code Remote-SSH name the guest by
that alias. aivm keeps the blocks in `<user state>/ssh_config` and runs its
own git commands with `ssh -F` on that file; `include_step` adds one
`Include` line to the top of ~/.ssh/config so plain `git push aivm-<vm>`
and VS Code resolve the alias too (approved like any change to a user file).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from aivm import paths
from aivm.activate.plan import Action, Effect, Privilege, Step
from aivm.guest import ssh


def managed_file() -> Path:
    return paths.user_state_dir() / "ssh_config"


def with_block(text: str, target: ssh.Target) -> str:
    """`text` with the VM's Host block added or replaced; other blocks untouched."""
    block = ssh.ssh_config_block(target)
    pattern = re.compile(rf"(?ms)^Host {re.escape(target.alias)}\n.*?(?=^Host |\Z)")
    if pattern.search(text):
        return pattern.sub(lambda _m: block, text, count=1)
    sep = "" if not text or text.endswith("\n") else "\n"
    return f"{text}{sep}{block}"


def write_step(target: ssh.Target) -> Step | None:
    path = managed_file()
    text = path.read_text() if path.exists() else ""
    new = with_block(text, target)
    if new == text:
        return None
    return Step(f"Record the ssh alias {target.alias}",
                "git remotes and VS Code reach the guest by this name",
                (Action.api(f"write Host {target.alias} ({target.user}@{target.host}) to {path}",
                            f"write {path}", lambda: _write(path, new)),),
                Privilege.USER, Effect.USER_WRITE)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def include_line() -> str:
    return f"Include {ssh.config_path(managed_file(), 'aivm ssh_config', tokens=False)}"


def include_step(home: Path | None = None) -> Step | None:
    """Prepend the Include line to ~/.ssh/config when it is missing."""
    config = (home or Path.home()) / ".ssh" / "config"
    text = config.read_text() if config.exists() else ""
    if include_line() in text.splitlines():
        return None
    new = f"{include_line()}\n{text}"
    return Step(f"Let ssh and VS Code resolve aivm's aliases via {config}",
                f"adds one line at its top: {include_line()}",
                (Action.api(f"prepend `{include_line()}` to {config}", f"edit {config}",
                            lambda: _write(config, new)),),
                Privilege.USER, Effect.SYSTEM_WRITE)


def git_ssh_command() -> str:
    """The ssh git uses for aivm remotes when aivm itself pushes and fetches."""
    return f"ssh -F {shlex.quote(str(managed_file()))} -o BatchMode=yes"
