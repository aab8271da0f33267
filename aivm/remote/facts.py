"""What a remote host is: probed over its ssh connection once per run (one shell script,
one round trip) and kept as a frozen value, as local host facts are.

`RemoteFacts` is what aivm learns of the host (accel, virtiofs, QEMU version, state dir,
store root, uid, nameservers); `graph_facts` turns it into the graph's `HostFacts`
(aivm/host/facts.py), so a remote VM's graph is a function of its host's facts as a local
VM's is of this machine's: its domain names the host's state dir, its accel the host's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from aivm.errors import CommandError
from aivm.host.facts import HostFacts
from aivm.remote.connection import Connection

# accel follows steps 1 and 2 of aivm/activate/accel.py (/dev/kvm usable, no nested PVM
# module, vmx or svm in the CPU flags); the tiny-guest run of step 3 is not made there.
# The remote's own defaults mirror aivm/paths.py: AIVM_STORE / AIVM_STATE in the login
# environment of the remote user (sshd's SetEnv, ~/.ssh/environment, or a profile), else
# /var/lib/aivm/store for root and ~/.local/share/aivm/store for others.
PROBE = r"""
uid=$(id -u)
if [ -n "${AIVM_STORE:-}" ]; then store=$AIVM_STORE
elif [ "$uid" = 0 ]; then store=/var/lib/aivm/store
else store=${XDG_DATA_HOME:-$HOME/.local/share}/aivm/store; fi
accel=tcg
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ ! -e /sys/module/kvm_pvm ] \
   && grep -qwE 'vmx|svm' /proc/cpuinfo 2>/dev/null; then accel=kvm; fi
virtiofs=no
for f in /usr/libexec/virtiofsd /usr/lib/qemu/virtiofsd; do [ -x "$f" ] && virtiofs=yes; done
command -v virtiofsd >/dev/null 2>&1 && virtiofs=yes
qemu=$(qemu-system-x86_64 --version 2>/dev/null | head -n 1)
echo "uid=$uid"
echo "store_root=$store"
echo "state_dir=${AIVM_STATE:-/var/lib/libvirt/aivm}"
echo "accel=$accel"
echo "virtiofs=$virtiofs"
echo "qemu_version=$qemu"
echo "nameservers=$(sed -n 's/^nameserver[[:space:]]*//p' /etc/resolv.conf 2>/dev/null \
  | tr '\n' ' ')"
"""


@dataclass(frozen=True)
class RemoteFacts:
    """A remote host's facts that activation and the graph depend on."""

    host: str              # the host's label ("local" for this machine)
    accel: str             # "kvm" when /dev/kvm is usable by the user, else "tcg"
    virtiofs: bool         # a virtiofsd is installed
    qemu_version: str      # first line of `qemu-system-x86_64 --version`, "" when absent
    state_dir: str         # per-VM state (disks, console logs)
    store_root: str        # the host's aivm store
    uid: int = -1
    nameservers: tuple[str, ...] = ()

    def graph_facts(self) -> HostFacts:
        """The graph's view: accel "kvm" or "qemu" (what `auto` resolves to there)."""
        return HostFacts(accel="kvm" if self.accel == "kvm" else "qemu",
                         virtiofs=self.virtiofs, state_dir=Path(self.state_dir),
                         nameservers=self.nameservers)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


_PROBED: dict[str, RemoteFacts] = {}


def probe(conn: Connection) -> RemoteFacts:
    """The remote's facts, probed once per process (per host) over `conn`."""
    label = conn.remote.label
    if label not in _PROBED:
        _PROBED[label] = parse(label, conn.run(("sh", "-c", PROBE),
                                               "probe the host's facts").stdout)
    return _PROBED[label]


def parse(label: str, text: str) -> RemoteFacts:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        return RemoteFacts(label, values["accel"], values["virtiofs"] == "yes",
                           values.get("qemu_version", ""), values["state_dir"],
                           values["store_root"], int(values["uid"]),
                           _addresses(values.get("nameservers", "")))
    except (KeyError, ValueError) as exc:
        raise CommandError(f"the facts of {label} could not be read: {text.strip()[:200]!r}",
                           hint="the remote needs a POSIX sh, id and head",
                           reason="remote-facts") from exc


def _addresses(text: str) -> tuple[str, ...]:
    out = []
    for word in text.split():
        try:
            out.append(str(ipaddress.ip_address(word.split("%", 1)[0])))
        except ValueError:
            continue
    return tuple(out)


def graph_facts(vm_host: str) -> HostFacts:
    """The graph facts of the host named by a VM's `host` (probed once per process)."""
    from aivm.remote.address import parse as parse_host

    return probe(Connection.to(parse_host(vm_host))).graph_facts()
