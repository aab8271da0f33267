"""A second namespace standing for a remote machine: sshd on its own private address,
with its own aivm store root and state dir (issue #17).

`remote_host(client_netns, work, server_netns=...)` runs sshd in `server_netns` (the
stack's, where libvirtd and the guests live: the remote machine) or in a new namespace
`<client>-rh`, joined to `client_netns` (where aivm runs: the user's laptop) by a veth
pair made inside the client namespace, so no link appears in the main namespace; sshd
listens only on the server end. aivm reaches it with `AIVM_NETNS=<client>` (or run
generated client key, the host's key pinned in a known_hosts file). The remote
user is root; sshd's `SetEnv` gives its sessions `AIVM_STORE` and `AIVM_STATE`, so the
remote's facts name the remote store root.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aivm.run import Cmd, run
from tests.e2e.netns import (
    netns_add,
    netns_delete,
    ns_exec,
    ns_pids,
    read_pidfile,
    stop_pid,
    wait_until,
)

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class RemoteHost:
    netns: str
    address: str          # the remote's address (sshd), inside the test's namespaces
    gateway: str          # the client namespace's end of the veth
    store_root: Path      # the remote's aivm store (its AIVM_STORE)
    state_dir: Path       # the remote's AIVM_STATE
    ssh_config: Path      # for AIVM_SSH_CONFIG: identity, pinned host key
    sshd_log: Path

    @property
    def destination(self) -> str:
        return f"root@{self.address}"

    def accepted_logins(self) -> int:
        """How many ssh connections sshd has authenticated so far."""
        text = self.sshd_log.read_text(errors="replace") if self.sshd_log.exists() else ""
        return text.count("Accepted publickey")


@contextlib.contextmanager
def remote_host(client_netns: str, work: Path, *, server_netns: str = "",
                subnet_prefix: str = "10.213.17", veth: str = "aivmrh") -> Iterator[RemoteHost]:
    """sshd in `server_netns` (the stack's: the machine libvirtd and the guests live on),
    else in a new namespace `<client>-rh`; reached from `client_netns` over a veth pair."""
    own = not server_netns
    name = server_netns or f"{client_netns}-rh"
    work.mkdir(parents=True, exist_ok=True)
    host = RemoteHost(name, f"{subnet_prefix}.2", f"{subnet_prefix}.1", work / "remote-store",
                      work / "remote-state", work / "ssh_config", work / "sshd.log")
    try:
        if own:
            netns_add(name)
        _join(client_netns, host, veth)
        _start_sshd(host, work)
        yield host
    finally:
        pid = read_pidfile(work / "sshd.pid")
        if pid is not None:
            stop_pid(pid, wait_s=5.0)
        if own:
            for pid in ns_pids(name):
                stop_pid(pid, wait_s=5.0)
            netns_delete(name)
        else:
            ns_exec(client_netns, "ip", "link", "delete", f"{veth}0", check=False)


def _join(client: str, host: RemoteHost, veth: str) -> None:
    ns_exec(client, "ip", "link", "add", f"{veth}0", "type", "veth", "peer", "name",
            f"{veth}1", "netns", host.netns, meaning="veth pair to the remote host")
    ns_exec(client, "ip", "addr", "add", f"{host.gateway}/24", "dev", f"{veth}0")
    ns_exec(client, "ip", "link", "set", f"{veth}0", "up")
    ns_exec(host.netns, "ip", "addr", "add", f"{host.address}/24", "dev", f"{veth}1")
    ns_exec(host.netns, "ip", "link", "set", f"{veth}1", "up")


def _keygen(path: Path) -> None:
    run(Cmd.of("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aivm-test", "-f",
               str(path), meaning="make a test ssh key"))


def _start_sshd(host: RemoteHost, work: Path) -> None:
    for key in (work / "host_key", work / "client_key"):
        if not key.exists():
            _keygen(key)
    (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
    pub = (work / "host_key.pub").read_text().split()
    (work / "known_hosts").write_text(f"{host.address} {pub[0]} {pub[1]}\n")
    host.store_root.mkdir(exist_ok=True)
    host.state_dir.mkdir(exist_ok=True)
    (work / "sshd_config").write_text(
        f"ListenAddress {host.address}\nPort 22\nHostKey {work / 'host_key'}\n"
        f"PidFile {work / 'sshd.pid'}\nAuthorizedKeysFile {work / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel VERBOSE\n"
        "AllowTcpForwarding yes\nMaxSessions 50\nMaxStartups 50\n"
        f"SetEnv AIVM_STORE={host.store_root} AIVM_STATE={host.state_dir}\n")
    host.ssh_config.write_text(
        f"Host {host.address}\n  IdentityFile {work / 'client_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {work / 'known_hosts'}\n  StrictHostKeyChecking yes\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    ns_exec(host.netns, SSHD, "-f", str(work / "sshd_config"), "-E", str(host.sshd_log),
            meaning="start the remote host's sshd")
    wait_until(lambda: read_pidfile(work / "sshd.pid") is not None and _listening(host),
               15.0, f"sshd on {host.address}")


def _listening(host: RemoteHost) -> bool:
    return bool(ns_exec(host.netns, "ss", "-Hltn", f"src {host.address}", "sport = :22",
                        check=False).stdout.strip())
