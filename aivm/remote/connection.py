"""One multiplexed ssh connection to a remote host, and commands run through it.

Every command aivm runs on a remote host is an ordinary `aivm.run.Cmd` whose argv is
`ssh <options> <host> -- <command>`: the one subprocess chokepoint stays aivm/run.py.
The options make every such ssh a client of one master connection (ControlMaster=auto,
ControlPath in a private 0700 directory, ControlPersist), so a run opens one TCP
connection and one authentication however many commands it sends; `close` ends it.

ssh is a guest-network command (`in_netns`): under `AIVM_NETNS` (tests, `make demo`) it
runs inside that namespace. `AIVM_SSH_CONFIG=<file>` gives ssh a config file of its own
(`-F`, identity and known hosts for a test host); otherwise the user's ~/.ssh/config
applies as for any ssh.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aivm.errors import CommandError
from aivm.remote.address import Remote
from aivm.run import Cmd, Result, run

PERSIST_SECONDS = 120


def control_dir() -> Path:
    """A directory only this user can enter, for the master's socket (short: sockets are
    limited to 108 bytes)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    path = Path(base) / f"aivm-ssh-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise CommandError(f"{path} is not a private directory of this user",
                           hint="remove it (or set XDG_RUNTIME_DIR); aivm keeps its ssh "
                                "control sockets there", reason="ssh-control-dir")
    return path


@dataclass(frozen=True)
class Connection:
    remote: Remote
    control: Path

    @classmethod
    def to(cls, remote: Remote) -> Connection:
        return cls(remote, control_dir())

    def ssh_argv(self, *, master: str = "auto") -> tuple[str, ...]:
        """ssh with the multiplexing options, up to and including the destination."""
        config = os.environ.get("AIVM_SSH_CONFIG", "")
        return ("ssh", *(("-F", config) if config else ()),
                "-o", f"ControlMaster={master}", "-o", f"ControlPath={self.control}/%C",
                "-o", f"ControlPersist={PERSIST_SECONDS}", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=10", "-p", str(self.remote.port),
                self.remote.destination)

    def proxy_command(self) -> str:
        """The ssh command line a guest's ssh_config block jumps through (ProxyCommand
        form of ProxyJump, so the jump reuses the same master and config file)."""
        argv = (a.replace("%C", "%%C") for a in self.ssh_argv())  # the outer ssh expands %
        return shlex.join((*argv, "-W", "%h:%p"))

    def cmd(self, argv: Sequence[str], meaning: str = "", *, root: bool = False,
            stdin: bytes | str | None = None) -> Cmd:
        """`argv` run on the remote host (as root through `sudo -n` unless the remote user
        is root), as a local `Cmd`."""
        remote = list(argv)
        if root and self.remote.user != "root":
            remote = ["sudo", "-n", "--", *remote]
        return Cmd.of(*self.ssh_argv(), "--", shlex.join(remote),
                      meaning=f"{meaning or argv[0]} on {self.remote.label}", in_netns=True,
                      stdin=stdin)

    def script(self, text: str, meaning: str, *, root: bool = False) -> Cmd:
        """A POSIX shell script run by the remote's `sh`."""
        return self.cmd(("sh", "-c", text), meaning, root=root)

    def run(self, argv: Sequence[str], meaning: str = "", *, root: bool = False,
            check: bool = True, timeout: float | None = 300) -> Result:
        return run(self.cmd(argv, meaning, root=root), check=check, timeout=timeout)

    def open(self) -> None:
        """Start the master now (a failure to reach the host is reported once, here).
        `-E` sends the master's own log to a file, so no pipe of ours stays open."""
        if self.is_open():
            return
        log = self.control / f"{self.remote.host}-{self.remote.port}.log"
        result = run(Cmd.of(*self.ssh_argv(master="yes")[:-1], "-E", str(log), "-f", "-N",
                            self.remote.destination,
                            meaning=f"connect to {self.remote.label}", in_netns=True),
                     check=False, timeout=60)
        if not result.ok:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] \
                if log.exists() else []
            raise CommandError(f"cannot reach {self.remote.label} over ssh: "
                               f"{' '.join(tail) or result.stderr.strip()}",
                               hint=f"check that `ssh {self.remote.destination}` works "
                                    "without a password (key in ssh-agent or ~/.ssh/config)",
                               reason="remote-unreachable")

    def is_open(self) -> bool:
        return run(Cmd.of(*self.ssh_argv()[:-1], "-O", "check", self.remote.destination,
                          in_netns=True), check=False, timeout=30).ok

    def close(self) -> None:
        run(Cmd.of(*self.ssh_argv()[:-1], "-O", "exit", self.remote.destination,
                   in_netns=True), check=False, timeout=30)
