"""aivm's own ssh config file: one `Host <vm> aivm-<vm>` block per VM.

The VM's name is its ssh alias, as the seed documents (`ssh aivm-2404`, VS
Code's host list); git remotes (`<alias>:<path>`) name the guest by it too.
The old `aivm-<vm>` stays in the block as a second name for one release, so
existing remotes and VS Code entries keep working. aivm keeps the blocks in
`<user state>/ssh_config` and runs its own git commands with `ssh -F` on that
file; `include_step` adds one `Include` line to the top of ~/.ssh/config so
plain `ssh <vm>`, `git push` and VS Code resolve the alias too (approved
like any change to a user file).

That Include sits first in ~/.ssh/config, so a block named after a VM would
capture a real host of the same name (a VM called `prod` or `github.com`):
a VM whose name contains a dot, or already appears on a `Host` line of the
user's own ~/.ssh/config, keeps only `aivm-<vm>`, with a warning (`alias`).
"""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

from aivm import fsutil, paths
from aivm.activate.plan import Action, Effect, Privilege, Step
from aivm.guest import ssh


def managed_file() -> Path:
    return paths.user_state_dir() / "ssh_config"


def legacy_alias(vm: str) -> str:
    """The alias before 0.5 (kept as a second Host name for one release)."""
    return f"aivm-{vm}"


def user_host_names(home: Path | None = None) -> frozenset[str]:
    """The names on the `Host` lines of the user's ~/.ssh/config (patterns kept as written;
    negations dropped). Unreadable or absent: none."""
    config = (home or Path.home()) / ".ssh" / "config"
    try:
        text = config.read_text(errors="replace")
    except OSError:
        return frozenset()
    names: set[str] = set()
    for line in text.splitlines():
        found = _HOST_LINE.match(line)
        if found:
            names.update(w.strip('"') for w in found.group(1).split() if not w.startswith("!"))
    return frozenset(names)


_HOST_LINE = re.compile(r"(?i)^\s*host(?:\s*=\s*|\s+)(.*)$")


def alias_problem(vm: str, home: Path | None = None) -> str | None:
    """Why the VM's own name cannot be its alias, or None when it can."""
    if "." in vm:
        return "it contains a dot and could capture a real host's name"
    if vm in user_host_names(home):
        return "it already names a Host in ~/.ssh/config"
    return None


def alias(vm: str, home: Path | None = None) -> str:
    """The VM's ssh alias: its name, else `aivm-<vm>` with a warning (see the module doc)."""
    problem = alias_problem(vm, home)
    if problem is None:
        return vm
    if problem not in _WARNED.setdefault(vm, set()):
        _WARNED[vm].add(problem)
        logging.getLogger("aivm").warning(
            "the ssh alias of VM %s is %s, not %s: %s", vm, legacy_alias(vm), vm, problem)
    return legacy_alias(vm)


_WARNED: dict[str, set[str]] = {}


def host_names(vm: str, home: Path | None = None) -> tuple[str, ...]:
    """The names of the VM's Host block: its alias, then the legacy one when different."""
    first = alias(vm, home)
    return tuple(dict.fromkeys((first, legacy_alias(vm))))


def with_block(text: str, target: ssh.Target) -> str:
    """`text` with the VM's Host block added or replaced; other blocks untouched. A block is
    found by the legacy name, which every block of this VM (old or new) carries."""
    block = ssh.ssh_config_block(target)
    legacy = re.escape(legacy_alias(target.vm))
    pattern = re.compile(rf"(?ms)^Host (?:[^\n]* )?{legacy}(?: [^\n]*)?\n.*?(?=^Host |\Z)")
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


def record(target: ssh.Target) -> None:
    """Write the VM's block into aivm's own ssh config (its state, like the recorded IP;
    `aivm up` does this once the guest is ready, so `ssh -F <that file> <vm>` works)."""
    path = managed_file()
    text = path.read_text() if path.exists() else ""
    new = with_block(text, target)
    if new != text:
        _write(path, new)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(path, text, mode=0o600)


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
