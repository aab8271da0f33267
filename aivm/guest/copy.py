"""`aivm cp SRC... DEST`: copy files and folders into or out of a VM over its ssh alias.

One side names the VM (`VM:path`); the other is the host. Folders are copied
recursively, modes and times kept. The tool is rsync when both the host and
the guest have it (`-a`, resumable, `--info=progress2`), else scp (`-r -p`;
SFTP protocol when the guest has sftp-server, else the legacy protocol with
`-O`). Both run `ssh -F <aivm's ssh config>` and reach the guest by its
alias, like `ssh <vm>`, `git push` and VS Code; with AIVM_NETNS set they run
inside that namespace. The Debian guest aivm builds has no rsync unless the
VM's `packages` add it: scp then.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from aivm.errors import AivmError
from aivm.guest import ssh, sshconf
from aivm.run import Cmd, run


@dataclass(frozen=True)
class Endpoint:
    vm: str | None
    path: str

    def show(self) -> str:
        return f"{self.vm}:{self.path}" if self.vm else self.path


@dataclass(frozen=True)
class Transfer:
    vm: str
    sources: tuple[str, ...]
    dest: str
    upload: bool                # host -> guest


@dataclass(frozen=True)
class Tools:
    rsync: bool
    sftp: bool


def endpoint(text: str, vm_names: frozenset[str]) -> Endpoint:
    """`VM:path` when the part before the first ':' is a declared VM, else a host path."""
    head, sep, rest = text.partition(":")
    if sep and head in vm_names and "/" not in head:
        return Endpoint(head, rest or ".")
    return Endpoint(None, text)


def transfer(args: tuple[str, ...], vm_names: frozenset[str]) -> Transfer:
    if len(args) < 2:
        raise AivmError("aivm cp needs at least one source and a destination",
                        hint="aivm cp ./file VM:dir/  or  aivm cp VM:path ./here", reason="usage")
    ends = [endpoint(a, vm_names) for a in args]
    *srcs, dest = ends
    vms = {e.vm for e in ends if e.vm}
    if not vms:
        raise AivmError("no side of the copy names a VM", hint="write the guest side as "
                        f"VM:path (VMs: {', '.join(sorted(vm_names)) or 'none'})",
                        reason="usage")
    if len(vms) > 1 or (dest.vm and any(s.vm for s in srcs)) or \
            (not dest.vm and not all(s.vm for s in srcs)):
        raise AivmError("one side of the copy must be the host and the other one VM",
                        hint="copy into the VM (host paths, then VM:dest) or out of it "
                             "(VM:paths, then a host path)", reason="usage")
    upload = dest.vm is not None
    if upload:
        for src in srcs:
            if not Path(src.path).exists():
                raise AivmError(f"no such file or folder: {src.path}",
                                hint="check the path (relative to this folder)",
                                reason="no-such-file")
    return Transfer(vms.pop(), tuple(s.path for s in srcs), dest.path, upload)


def guest_tools(target: ssh.Target) -> Tools:
    script = "command -v rsync >/dev/null && echo rsync; " \
             "for d in /usr/lib/openssh /usr/libexec/openssh /usr/lib/ssh; do " \
             "test -x $d/sftp-server && echo sftp && break; done; true"
    out = run(ssh.command(target, ["sh", "-c", shlex.quote(script)],
                          meaning="look for rsync and sftp-server in the guest"),
              timeout=30).stdout.split()
    return Tools("rsync" in out, "sftp" in out)


def command(t: Transfer, target: ssh.Target, tools: Tools, *, host_rsync: bool,
            progress: bool) -> Cmd:
    config = str(sshconf.managed_file())
    alias = target.alias
    remote = [f"{alias}:{p}" for p in t.sources] if not t.upload else []
    argv_src = list(t.sources) if t.upload else remote
    argv_dst = f"{alias}:{t.dest}" if t.upload else t.dest
    if tools.rsync and host_rsync:
        flags = ["-a", "--info=progress2" if progress else "-q"]
        argv = ["rsync", *flags, "-e", shlex.join(["ssh", "-F", config, "-o", "BatchMode=yes"]),
                *argv_src, argv_dst]
    else:
        argv = ["scp", "-F", config, "-o", "BatchMode=yes", "-r", "-p",
                *([] if tools.sftp else ["-O"]), *([] if progress else ["-q"]),
                *argv_src, argv_dst]
    direction = f"into {t.vm}" if t.upload else f"out of {t.vm}"
    return Cmd.of(*argv, meaning=f"copy {' '.join(t.sources)} {direction} with {argv[0]}",
                  in_netns=True)
