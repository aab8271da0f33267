"""Value checks for single fields: each returns (message, hint) or None.

Kept apart from the type conversion in validate.py so that the list of what
counts as an impossible value reads as one table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from aivm.config import schema

Problem = tuple[str, str] | None
Check = Callable[[Any], Problem]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TZ_RE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
MIN_MEMORY_MIB = 256
IFNAMSIZ = 15


@functools.cache
def host_memory_mib() -> int:
    """MemTotal of this host in MiB (0 when unknown: the check is then skipped)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def name(value: str) -> Problem:
    if _NAME_RE.match(value):
        return None
    return (f"bad name {value!r}",
            "use 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit")


def user(value: str) -> Problem:
    if _USER_RE.match(value):
        return None
    return (f"bad user name {value!r}",
            "use a Linux user name: lowercase letters, digits, '-' or '_', at most 32")


def cpus(value: int) -> Problem:
    if value < 1:
        return f"cpus must be at least 1, not {value}", "set cpus = 1 or more"
    if value > 512:
        return (f"cpus = {value} is more than any host offers",
                "set cpus to at most the host's cores")
    return None


def memory_mib(value: int) -> Problem:
    if value < MIN_MEMORY_MIB:
        return (f"memory_mib = {value} is too small to boot a guest",
                f"set memory_mib to at least {MIN_MEMORY_MIB}")
    total = host_memory_mib()
    if total and value > total:
        return (f"memory_mib = {value} is more than this host has ({total} MiB)",
                f"set memory_mib to at most {total // 2} (half the host) or so")
    return None


def positive(what: str) -> Check:
    def check(value: int) -> Problem:
        return None if value >= 1 else (f"{what} must be at least 1, not {value}",
                                        f"set {what} = 1 or more")
    return check


def non_negative(what: str) -> Check:
    def check(value: int) -> Problem:
        return None if value >= 0 else (f"{what} must not be negative", f"set {what} = 0 or more")
    return check


def timezone(value: str) -> Problem:
    if _TZ_RE.match(value):
        return None
    return f"bad timezone {value!r}", "use a tz database name such as UTC or Europe/Berlin"


def bridge(value: str) -> Problem:
    if len(value) > IFNAMSIZ:
        return (f"bridge name {value!r} is {len(value)} characters; Linux allows {IFNAMSIZ}",
                f"shorten it, e.g. {value[:IFNAMSIZ]!r}")
    if not _BRIDGE_RE.match(value):
        return f"bad bridge name {value!r}", "use letters, digits, '-', '_' or '.'"
    return None


def cidr(value: str) -> Problem:
    import ipaddress

    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"{value!r} is not a CIDR subnet", "write it as address/prefix, e.g. 10.77.0.0/24"
    if net.version != 4:
        return f"{value!r} is not an IPv4 subnet", "aivm networks are IPv4, e.g. 10.77.0.0/24"
    if str(net) != value:
        return f"{value!r} has host bits set", f"did you mean {str(net)!r}?"
    return None


def ipv4(value: str) -> Problem:
    import ipaddress

    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"{value!r} is not an IPv4 address", "write it as four numbers, e.g. 10.77.0.1"
    return None


def ports(value: tuple[int, ...]) -> Problem:
    bad = [p for p in value if not 1 <= p <= 65535]
    return (f"port {bad[0]} is out of range", "ports are 1-65535") if bad else None


def cidrs(value: tuple[str, ...]) -> Problem:
    import ipaddress

    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return (f"{item!r} is not a CIDR range",
                    "write ranges as address/prefix, e.g. 192.168.0.0/16")
    return None


def lan_endpoints(proto: str) -> Check:
    """`allow_lan_<proto>`: the recipe's own parser, so lint and build agree."""
    def check(value: tuple[str, ...]) -> Problem:
        from aivm.errors import AivmError
        from aivm.recipes.nft_ruleset import lan_rules

        try:
            lan_rules(value, proto)
        except AivmError as exc:
            return exc.message, exc.hint
        return None
    return check


def provision(field: str) -> Check:
    """`[[provisions]]` values: the recipe's own parsers, so lint and build agree."""
    def check(value: Any) -> Problem:
        from aivm.errors import AivmError
        from aivm.recipes.provision import check_field

        try:
            check_field(field, value)
        except AivmError as exc:
            return exc.message, exc.hint
        return None
    return check


def sha256(value: str) -> Problem:
    if value == "" or _SHA_RE.match(value):
        return None
    return (f"sha256 {value!r} is not 64 lowercase hex digits",
            "copy the digest from the image's SHA256SUMS file, or leave it empty to be told later")


def url(value: str) -> Problem:
    if value.startswith(("https://", "http://", "file://", "/", "~")) or value == "":
        return None
    return (f"url {value!r} is not http(s)://, file:// or an absolute path",
            "give a full URL to the image, or the absolute path of a local image file")


def host_path(value: str) -> Problem:
    if value.startswith(("/", "~")):
        return None
    return f"host_path {value!r} is not absolute", "write an absolute path or one starting with ~"


def guest_dst(value: str) -> Problem:
    if value == "" or value.startswith("/"):
        return None
    return f"guest_dst {value!r} is not absolute", "write an absolute guest path, or leave it empty"


def nonempty_items(value: tuple[str, ...]) -> Problem:
    return ("a path in the list is empty", "remove the empty entry") if "" in value else None


def optional_name(value: str) -> Problem:
    return None if value == "" else name(value)


def schema_version(value: int) -> Problem:
    if value < 1:
        return (f"schema_version {value} is not valid",
                f"set schema_version = {schema.SCHEMA_VERSION}")
    return None


FIELD_CHECKS: dict[tuple[type, str], Check] = {
    (schema.Vm, "name"): name,
    (schema.Vm, "user"): user,
    (schema.Vm, "cpus"): cpus,
    (schema.Vm, "memory_mib"): memory_mib,
    (schema.Vm, "disk_gib"): positive("disk_gib"),
    (schema.Vm, "image"): name,
    (schema.Vm, "network"): name,
    (schema.Vm, "timezone"): timezone,
    (schema.Vm, "uid"): non_negative("uid"),
    (schema.Vm, "gid"): non_negative("gid"),
    (schema.Network, "name"): name,
    (schema.Network, "bridge"): bridge,
    (schema.Network, "subnet"): cidr,
    (schema.Network, "gateway"): ipv4,
    (schema.Network, "dhcp_start"): ipv4,
    (schema.Network, "dhcp_end"): ipv4,
    (schema.Firewall, "allow_tcp_ports"): ports,
    (schema.Firewall, "allow_udp_ports"): ports,
    (schema.Firewall, "extra_blocked"): cidrs,
    (schema.Firewall, "allow_lan_tcp"): lan_endpoints("tcp"),
    (schema.Firewall, "allow_lan_udp"): lan_endpoints("udp"),
    (schema.Image, "name"): name,
    (schema.Image, "sha256"): sha256,
    (schema.Image, "url"): url,
    (schema.Image, "suite"): name,
    (schema.Image, "image_size_gib"): positive("image_size_gib"),
    (schema.Provision, "name"): name,
    (schema.Provision, "base"): name,
    (schema.Provision, "packages"): provision("packages"),
    (schema.Provision, "run"): provision("run"),
    (schema.Provision, "apt_sources"): provision("apt_sources"),
    (schema.Provision, "allow"): provision("allow"),
    (schema.ProvisionFile, "dest"): provision("dest"),
    (schema.ProvisionFile, "mode"): provision("mode"),
    (schema.Attachment, "host_path"): host_path,
    (schema.Attachment, "vm"): name,
    (schema.Attachment, "guest_dst"): guest_dst,
    (schema.Sync, "paths"): nonempty_items,
    (schema.Behavior, "verbosity"): non_negative("verbosity"),
    (schema.Config, "active_vm"): optional_name,
    (schema.Config, "schema_version"): schema_version,
}
