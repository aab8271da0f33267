"""What a remote host is: probed over its ssh connection once per run (one shell script,
one round trip) and kept as a frozen value, as local host facts are.

Helper B's local `HostFacts` (aivm/host/facts.py) did not exist when this was written;
`HostFacts` here carries the same facts (accel, virtiofs, QEMU version, state dir, store
root) under the names the issue uses, so the two can merge into one type.
"""

from __future__ import annotations

from dataclasses import dataclass

from aivm.errors import CommandError
from aivm.remote.connection import Connection

# The remote's own defaults mirror aivm/paths.py: AIVM_STORE / AIVM_STATE in the login
# environment of the remote user (sshd's SetEnv, ~/.ssh/environment, or a profile), else
# /var/lib/aivm/store for root and ~/.local/share/aivm/store for others.
PROBE = r"""
uid=$(id -u)
if [ -n "${AIVM_STORE:-}" ]; then store=$AIVM_STORE
elif [ "$uid" = 0 ]; then store=/var/lib/aivm/store
else store=${XDG_DATA_HOME:-$HOME/.local/share}/aivm/store; fi
accel=tcg
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accel=kvm; fi
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
"""


@dataclass(frozen=True)
class HostFacts:
    """A host's facts that activation and the graph depend on."""

    host: str              # the host's label ("local" for this machine)
    accel: str             # "kvm" when /dev/kvm is usable by the user, else "tcg"
    virtiofs: bool         # a virtiofsd is installed
    qemu_version: str      # first line of `qemu-system-x86_64 --version`, "" when absent
    state_dir: str         # per-VM state (disks, console logs)
    store_root: str        # the host's aivm store
    uid: int = -1

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


_PROBED: dict[str, HostFacts] = {}


def probe(conn: Connection) -> HostFacts:
    """The remote's facts, probed once per process (per host) over `conn`."""
    label = conn.remote.label
    if label not in _PROBED:
        _PROBED[label] = parse(label, conn.run(("sh", "-c", PROBE),
                                               "probe the host's facts").stdout)
    return _PROBED[label]


def parse(label: str, text: str) -> HostFacts:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        return HostFacts(label, values["accel"], values["virtiofs"] == "yes",
                         values.get("qemu_version", ""), values["state_dir"],
                         values["store_root"], int(values["uid"]))
    except (KeyError, ValueError) as exc:
        raise CommandError(f"the facts of {label} could not be read: {text.strip()[:200]!r}",
                           hint="the remote needs a POSIX sh, id and head",
                           reason="remote-facts") from exc
