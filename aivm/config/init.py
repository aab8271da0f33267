"""Create a first config from what this host offers.

`detect()` picks cores and memory tiers (half the host, capped), an existing
ssh key or a dedicated one to create, and the first 10.77.N.0/24 that no host
route overlaps. `render()` shows it as commented TOML; `apply()` creates the
key if needed and writes the file. `implicit_init()` does all of it without
asking, for `aivm up` / `aivm code .` on a machine with no config;
`implicit_preview()` is its dry run: what would be written, nothing written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from aivm.config import load as load_mod
from aivm.config import schema, stamp, write
from aivm.errors import ConfigError

log = logging.getLogger("aivm.config")

MEMORY_TIERS_MIB = (512, 1024, 2048, 4096, 8192, 16384)
MAX_CPUS = 8
KEY_NAMES = ("id_ed25519", "id_ecdsa", "id_rsa")
DEDICATED_KEY = "aivm_ed25519"


@dataclass(frozen=True)
class HostFacts:
    cpus: int
    memory_mib: int
    routes: tuple[str, ...]       # IPv4 CIDRs of the host's routes, default route excluded
    home: Path
    timezone: str = "UTC"


@dataclass(frozen=True)
class InitPlan:
    host: HostFacts
    vm: schema.Vm
    network: schema.Network
    create_key: bool              # vm.ssh_privkey is a dedicated key still to be made


def host_facts() -> HostFacts:
    from aivm.config import checks

    return HostFacts(cpus=os.cpu_count() or 1, memory_mib=checks.host_memory_mib(),
                     routes=tuple(host_routes()), home=Path.home(), timezone=host_timezone())


def detect(host: HostFacts, taken: tuple[str, ...] = ()) -> InitPlan:
    pub, priv, exists = find_ssh_key(host.home)
    subnet = free_subnet(host.routes + taken)
    vm = dataclasses.replace(schema.Vm(), cpus=pick_cpus(host.cpus),
                             memory_mib=pick_memory(host.memory_mib), ssh_pubkey=pub,
                             ssh_privkey=priv, timezone=host.timezone)
    return InitPlan(host, vm, network_for(subnet), create_key=not exists)


def pick_cpus(host_cpus: int) -> int:
    return max(1, min(MAX_CPUS, host_cpus // 2))


def pick_memory(host_mib: int) -> int:
    """The largest tier that is at most half the host's memory (the smallest tier if none)."""
    fitting = [t for t in MEMORY_TIERS_MIB if t <= host_mib // 2]
    return fitting[-1] if fitting else MEMORY_TIERS_MIB[0]


def find_ssh_key(home: Path) -> tuple[str, str, bool]:
    """(public, private, exists): the first usual key with a .pub, else the dedicated one."""
    for name in (*KEY_NAMES, DEDICATED_KEY):
        if (home / ".ssh" / f"{name}.pub").is_file():
            return f"~/.ssh/{name}.pub", f"~/.ssh/{name}", True
    return f"~/.ssh/{DEDICATED_KEY}.pub", f"~/.ssh/{DEDICATED_KEY}", False


def free_subnet(used: tuple[str, ...]) -> str:
    import ipaddress

    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    for n in range(256):
        candidate = ipaddress.IPv4Network(f"10.77.{n}.0/24")
        if not any(candidate.overlaps(t) for t in taken if t.version == 4):
            return str(candidate)
    raise ConfigError("every 10.77.N.0/24 subnet overlaps a route of this host",
                      hint="set [[networks]] subnet by hand to a free private range",
                      reason="no-free-subnet")


def network_for(subnet: str) -> schema.Network:
    import ipaddress

    net = ipaddress.IPv4Network(subnet)
    return schema.Network(subnet=subnet, gateway=str(net.network_address + 1),
                          dhcp_start=str(net.network_address + 100),
                          dhcp_end=str(net.broadcast_address - 1))


def host_routes() -> list[str]:
    """IPv4 destinations of the host's routes (no default route): `ip -j route`, else /proc."""
    from aivm import run
    from aivm.errors import CommandError

    try:
        result = run.run(run.Cmd.of("ip", "-j", "route", "show", "table", "all",
                                    meaning="read the host's routes to pick a free subnet"))
        return routes_from_json(result.stdout)
    except (CommandError, ValueError):
        return routes_from_proc(_read("/proc/net/route"))


def routes_from_json(text: str) -> list[str]:
    import ipaddress

    out: list[str] = []
    for route in json.loads(text or "[]"):
        dst = route.get("dst", "")
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue                  # "default", "broadcast" names and the like
        if net.version == 4 and net.prefixlen > 0:
            out.append(str(net))
    return out


def routes_from_proc(text: str) -> list[str]:
    """Parse /proc/net/route: little-endian hex destination and mask."""
    import ipaddress

    out: list[str] = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        try:
            dst = ipaddress.IPv4Address(int(cols[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(cols[7], 16).to_bytes(4, "little"))
        except ValueError:
            continue
        if int(mask):
            out.append(str(ipaddress.IPv4Network(f"{dst}/{mask}", strict=False)))
    return out


def host_timezone() -> str:
    from aivm.config import checks

    name = _read("/etc/timezone").strip()
    if not name:
        link = os.path.realpath("/etc/localtime")
        name = link.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in link else ""
    return name if name and checks.timezone(name) is None else "UTC"


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def summary(plan: InitPlan) -> str:
    key = plan.vm.ssh_pubkey + (" (to be created)" if plan.create_key else "")
    return (f"host: {plan.host.cpus} cores, {plan.host.memory_mib} MiB memory\n"
            f"vm: {plan.vm.name}, {plan.vm.cpus} cpus, {plan.vm.memory_mib} MiB\n"
            f"ssh key: {key}\n"
            f"network: {plan.network.subnet} (overlaps no host route)")


def render(plan: InitPlan) -> str:
    vm, net, q = plan.vm, plan.network, json.dumps
    return f"""\
# aivm configuration: the declared state aivm builds and activates.
# Edit with `aivm config edit`; check with `aivm config lint`.
schema_version = {schema.SCHEMA_VERSION}
active_vm = {q(vm.name)}

[behavior]
yes_sudo = false
auto_approve_readonly_sudo = true   # read-only sudo probes run without asking

# Every [[vms]] entry inherits these unless it sets them itself.
[defaults]
user = {q(vm.user)}
cpus = {vm.cpus}   # half of this host's {plan.host.cpus} cores
memory_mib = {vm.memory_mib}   # at most half of this host's {plan.host.memory_mib} MiB
disk_gib = {vm.disk_gib}
image = {q(vm.image)}
ssh_pubkey = {q(vm.ssh_pubkey)}
ssh_privkey = {q(vm.ssh_privkey)}
timezone = {q(vm.timezone)}
accel = "auto"   # kvm when it works, else qemu (slower)
network = {q(net.name)}

[[vms]]
name = {q(vm.name)}

# {net.subnet} overlapped no route of this host when this file was written.
[[networks]]
name = {q(net.name)}
bridge = {q(net.bridge)}
subnet = {q(net.subnet)}
gateway = {q(net.gateway)}
dhcp_start = {q(net.dhcp_start)}
dhcp_end = {q(net.dhcp_end)}

[networks.firewall]
enabled = true   # guests reach the internet but not the host's private networks
# allow_tcp_ports = [8080]               # host services, on the gateway address only
# allow_lan_tcp = ["192.168.1.10:5432"]  # a LAN host:port guests may reach (docs/security.md)

[sync]
enabled = false
"""


def apply(plan: InitPlan, path: Path, *, force: bool = False) -> schema.Config:
    """Create the ssh key if planned, then write the config (a .bak keeps a replaced one)."""
    found = stamp.read(path)
    if found is not None and not force:
        raise ConfigError(f"{path} already exists", reason="config-exists",
                          hint="edit it with `aivm config edit`, or replace it with "
                               "`aivm config init --force`")
    if plan.create_key:
        create_key(plan.host.home / ".ssh" / DEDICATED_KEY)
    if found is not None:
        path.with_name(path.name + ".bak").write_bytes(found[0])
    write.write_text(path, render(plan), since=found[1] if found else None)
    return load_mod.load(path)


def create_key(private: Path) -> None:
    from aivm import run

    if private.exists():
        return
    private.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    run.run(run.Cmd.of("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                       f"aivm@{socket.gethostname()}", "-f", str(private),
                       meaning="create a dedicated ssh key for aivm guests"))


@dataclass(frozen=True)
class Preview:
    """What `implicit_init` would do: the text it would write, the key it would create."""

    config: schema.Config
    text: str
    new_key: Path | None          # the public key ssh-keygen would create, if any

    def message(self, path: Path) -> str:
        key = f" and create the ssh key {self.new_key.with_suffix('')} (ssh-keygen)" \
            if self.new_key else ""
        body = "".join(f"  | {line}\n" for line in self.text.splitlines())
        return f"no config at {path}: without --dry-run, aivm would write it{key}:\n{body}"


def implicit_preview(path: Path) -> Preview:
    """The config `implicit_init(path)` would write, loaded from its text; nothing written."""
    plan = detect(host_facts())
    text = render(plan)
    key = plan.host.home / ".ssh" / f"{DEDICATED_KEY}.pub" if plan.create_key else None
    return Preview(load_mod.loads(text, path), text, key)


def implicit_init(path: Path) -> schema.Config:
    """Write a config with detected defaults, without asking; return it loaded."""
    plan = detect(host_facts())
    try:
        cfg = apply(plan, path)
    except ConfigError as exc:
        if exc.reason != "config-exists":
            raise
        return load_mod.load(path)      # another aivm created it meanwhile
    log.info("created %s with defaults (%s)", path, summary(plan).replace("\n", "; "))
    return cfg
