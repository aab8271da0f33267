"""ssh to a guest: one option set, shared by `aivm ssh`, the waits and ssh_config.

Every VM has its own known_hosts file under the user state dir, and
`StrictHostKeyChecking accept-new`: the first key a fresh guest shows is
recorded, a changed key afterwards is refused. Re-creating a VM gives it new
host keys, so `aivm up --recreate` and `aivm destroy` forget the old ones.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aivm import fsutil, paths
from aivm.errors import AivmError
from aivm.run import Cmd, run


@dataclass(frozen=True)
class Target:
    vm: str
    user: str
    host: str
    identity: Path
    jump: str = ""      # a VM on another host: the ssh command reaching it (ProxyCommand)

    @property
    def alias(self) -> str:
        """The name ssh, git and VS Code use for the guest (aivm/guest/sshconf.py)."""
        from aivm.guest import sshconf

        return sshconf.alias(self.vm)


def known_hosts(vm: str) -> Path:
    return paths.user_state_dir() / "known_hosts" / vm


def forget_host_keys(vm: str) -> None:
    known_hosts(vm).unlink(missing_ok=True)


def options(target: Target, *, batch: bool = True, connect_timeout: int = 5) -> list[str]:
    kh = known_hosts(target.vm)
    kh.parent.mkdir(parents=True, exist_ok=True)
    opts = ["-i", str(target.identity), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"ConnectTimeout={connect_timeout}", "-o", "LogLevel=ERROR"]
    if batch:
        opts += ["-o", "BatchMode=yes"]
    if target.jump:  # through the VM's host (aivm/remote): its one master connection
        opts += ["-o", f"ProxyCommand={target.jump}"]
    return opts


def command(target: Target, remote: Sequence[str] = (), *, tty: bool = False,
            batch: bool = True, meaning: str = "") -> Cmd:
    """The ssh Cmd; runs inside AIVM_NETNS when set (the guest network lives there)."""
    argv = ["ssh", *options(target, batch=batch), *(["-t"] if tty else []),
            f"{target.user}@{target.host}", *remote]
    return Cmd.of(*argv, meaning=meaning or f"run a command in {target.vm} over ssh",
                  in_netns=True)


def check(target: Target, *, timeout: float = 15) -> bool:
    result = run(command(target, ["true"], meaning="probe ssh"), check=False, timeout=timeout)
    return result.ok


def wait(resolve: Callable[[], Target | None], *, deadline: float,
         on_tick: Callable[[str], None] | None = None, interval: float = 2.0) -> Target:
    """Wait until ssh answers and cloud-init has finished (it restarts sshd: REALSTACK P4).

    `resolve` is asked for the target on every round: a re-created guest may
    take a new DHCP lease while its old one is still listed.
    """
    phase = "lease"
    while time.monotonic() < deadline:
        target = resolve()
        phase = "ssh" if target is not None and phase == "lease" else phase
        if on_tick:
            on_tick(phase)
        if target is not None and check(target):
            if _cloud_init_done(target):
                return target
            phase = "cloud-init"
        time.sleep(interval)
    raise AivmError("the guest did not answer ssh in time" if phase != "lease"
                    else "the guest got no DHCP lease in time",
                    hint="see the serial console log under the VM's state dir "
                         "(`aivm status --detail` shows its path)", reason=f"{phase}-timeout")


def _cloud_init_done(target: Target) -> bool:
    res = run(command(target, ["cloud-init", "status", "--wait"], meaning="wait for cloud-init"),
              check=False, timeout=600)
    if "status: error" in res.stdout:
        raise AivmError(f"cloud-init reported an error in {target.vm}: {res.stdout.strip()}",
                        hint=f"look at the console log: aivm status {target.vm} --detail",
                        reason="cloud-init-error")
    return res.ok or "status: done" in res.stdout  # else sshd was restarted under us


def ssh_config_block(target: Target) -> str:
    """A Host block usable by OpenSSH and VS Code Remote-SSH. Every value is checked or
    quoted first: this file is included at the top of ~/.ssh/config, so a newline in a
    value would add options (a `ProxyCommand`) to every ssh the user runs."""
    from aivm.recipes import values

    values.name(target.vm, "VM name")
    values.user(target.user, "user")
    if not _HOST.fullmatch(target.host):
        raise values.invalid("guest address", target.host, "an IP address or host name")
    from aivm.guest import sshconf

    return "\n".join([
        f"Host {' '.join(sshconf.host_names(target.vm))}",
        f"    HostName {target.host}",
        f"    User {target.user}",
        f"    IdentityFile {config_path(target.identity, 'ssh_privkey')}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {config_path(known_hosts(target.vm), 'known_hosts')}",
        "    StrictHostKeyChecking accept-new",
        *([f"    ProxyCommand {_checked_jump(target.jump)}"] if target.jump else []),
        "",
    ])


def _checked_jump(jump: str) -> str:
    """A ProxyCommand line must stay one line of this file (no control characters)."""
    from aivm.recipes import values

    if re.search(r"[\x00-\x1f\x7f]", jump):
        raise values.invalid("proxy command", jump, "one line without control characters")
    return jump


_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")
_PLAIN = re.compile(r"[A-Za-z0-9/._~+@,:%-]+")
_UNQUOTABLE = re.compile(r"[\x00-\x1f\x7f\"\\]")
_UNQUOTABLE_INCLUDE = re.compile(r"[\x00-\x1f\x7f\"\\%*?\[]")


def config_path(path: Path, what: str, *, tokens: bool = True) -> str:
    """A path as one ssh_config argument, double-quoted unless plain. `tokens`: the keyword
    expands `%d`, `%u`... (IdentityFile, UserKnownHostsFile), so '%' is doubled; otherwise
    (Include, which globs) '%' and glob characters are refused. Control characters, quotes
    and backslashes have no portable spelling in ssh_config: refused."""
    from aivm.recipes import values

    text = str(path)
    bad = _UNQUOTABLE if tokens else _UNQUOTABLE_INCLUDE
    if not text or bad.search(text):
        raise values.invalid(what, text, "ssh_config cannot hold control characters, "
                             "double quotes or backslashes in a path" + (
                                 "" if tokens else ", nor '%' or glob characters here"),
                             hint=f"use a plain path for {what}")
    text = text.replace("%", "%%")
    return text if _PLAIN.fullmatch(text) else f'"{text}"'


def record_ip(vm: str, ip: str, mac: str) -> None:
    path = paths.user_state_dir() / "vms" / f"{vm}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(path, json.dumps({"ip": ip, "mac": mac, "recorded": time.time()}))


def recorded_ip(vm: str) -> str | None:
    try:
        data = json.loads((paths.user_state_dir() / "vms" / f"{vm}.json").read_text())
    except (OSError, ValueError):
        return None
    ip = data.get("ip")
    return ip if isinstance(ip, str) else None
