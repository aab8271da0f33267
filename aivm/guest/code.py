"""`aivm code .`: open VS Code on the guest folder, or say exactly how to.

VS Code is launched as `code --remote ssh-remote+aivm-<vm> <guest path>`.
When `code` is not on PATH, or this is itself a remote (ssh) session where a
local window cannot open, the steps to connect are printed instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from aivm.guest import sshconf
from aivm.run import Cmd

REMOTE_VARS = ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")


def launch(alias: str, guest_path: str) -> Cmd:
    return Cmd.of("code", "--remote", f"ssh-remote+{alias}", guest_path,
                  meaning=f"open VS Code on {alias}:{guest_path}")


def why_not_launch(code_path: str | None, env: Mapping[str, str]) -> str | None:
    """Why VS Code cannot be started from here, or None when it can."""
    if any(env.get(v) for v in REMOTE_VARS):
        return "this is a remote (ssh) session: a VS Code window cannot open here"
    if not code_path:
        return "`code` (VS Code's command line) is not on PATH"
    return None


def manual_steps(reason: str, alias: str, vm: str, guest_path: str) -> str:
    return "\n".join([
        f"Not starting VS Code: {reason}.",
        "To connect from VS Code with the Remote - SSH extension:",
        f"  1. make the alias known to ssh: add `{sshconf.include_line()}` at the top of "
        f"~/.ssh/config (or paste the output of `aivm vm ssh_config {vm}`)",
        f"  2. in VS Code run \"Remote-SSH: Connect to Host...\" and choose {alias}",
        f"  3. open the folder {guest_path}",
        f"or, where `code` exists: code --remote ssh-remote+{alias} {guest_path}",
    ])
