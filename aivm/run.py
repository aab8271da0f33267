"""The one place where aivm starts a subprocess.

Every command is a `Cmd`: an argv, a one-line meaning, and whether it needs
root or must run where the guest network lives. Privilege is a prefix added
here (`sudo` only when not already root), never written into a command.
`AIVM_NETNS=<name>` makes guest-network commands (ssh, nft, probes) run inside
that network namespace: the test harness and `make demo` use it to keep every
packet off the host's own networks.

plumbum is imported on first use so that the no-op build path stays fast.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from aivm import buildlog
from aivm.errors import CommandError

log = logging.getLogger("aivm.run")


@dataclass(frozen=True)
class Cmd:
    argv: tuple[str, ...]
    meaning: str = ""
    root: bool = False
    in_netns: bool = False
    stdin: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, *argv: str, meaning: str = "", root: bool = False, in_netns: bool = False,
           stdin: bytes | str | None = None) -> Cmd:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        return cls(tuple(argv), meaning, root, in_netns, data)

    def full_argv(self) -> tuple[str, ...]:
        """The argv as it will really run, prefixes included."""
        prefix: list[str] = []
        netns = os.environ.get("AIVM_NETNS", "")
        needs_root = self.root or (self.in_netns and bool(netns))
        if needs_root and os.geteuid() != 0:
            prefix += ["sudo", "--"]
        if self.in_netns and netns:
            prefix += ["ip", "netns", "exec", netns]
        return tuple(prefix) + self.argv

    def shell(self) -> str:
        return shlex.join(self.full_argv())


@dataclass(frozen=True)
class Result:
    cmd: Cmd
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _plumbum_command(argv: Sequence[str]):  # type: ignore[no-untyped-def]
    from plumbum import local

    return local[argv[0]][list(argv[1:])]


def run(cmd: Cmd, *, check: bool = True, timeout: float | None = None) -> Result:
    """Run `cmd` with captured output; raise CommandError on failure when `check`."""
    from plumbum.commands.processes import ProcessTimedOut

    argv = cmd.full_argv()
    log.debug("run: %s", shlex.join(argv))
    try:
        bound = _plumbum_command(argv)
        if cmd.stdin is not None:
            bound = bound << cmd.stdin
        rc, out, err = bound.run(retcode=None, timeout=timeout)
    except ProcessTimedOut as exc:
        what = cmd.meaning or shlex.join(argv)
        raise CommandError(f"{argv[0]} timed out after {timeout} s: {what}",
                           hint="the machine may be overloaded; retry or raise the timeout",
                           reason="command-timeout") from exc
    except Exception as exc:  # plumbum raises CommandNotFound and OSError subclasses
        raise CommandError(f"cannot run {argv[0]}: {exc}",
                           hint=f"install {argv[0]} (see `aivm host doctor`)",
                           reason="command-missing") from exc
    result = Result(cmd, rc, _text(out), _text(err))
    buildlog.note_command(argv, rc, result.stdout, result.stderr)  # a build's log
    if check and rc != 0:
        raise failure(result)
    return result


def run_foreground(cmd: Cmd) -> int:
    """Run attached to the user's terminal (ssh shells, editors); return the exit code."""
    import subprocess

    argv = cmd.full_argv()
    log.debug("run (foreground): %s", shlex.join(argv))
    try:
        return subprocess.call(list(argv))
    except FileNotFoundError as exc:
        raise CommandError(f"cannot run {argv[0]}: not found", hint=f"install {argv[0]}",
                           reason="command-missing") from exc


def failure(result: Result) -> CommandError:
    tail = "\n".join(result.stderr.strip().splitlines()[-5:]) or result.stdout.strip()[-400:]
    what = result.cmd.meaning or shlex.join(result.cmd.argv)
    return CommandError(f"{what} failed (exit {result.returncode}): {tail}",
                        hint=f"the command was: {result.cmd.shell()}", reason="command-failed")


def _text(data: str | bytes) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def which(name: str) -> str | None:
    import shutil

    return shutil.which(name)
