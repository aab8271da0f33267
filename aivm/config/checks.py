"""Value checks for single fields: each returns (message, hint) or None.

Kept apart from the type conversion in validate.py so that the list of what
counts as an impossible value reads as one table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aivm.config import schema
from aivm.errors import AivmError
from aivm.recipes import values

Problem = tuple[str, str] | None
Check = Callable[[Any], Problem]

MIN_MEMORY_MIB = 256
IFNAMSIZ = values.IFNAMSIZ


def via(fn: Callable[..., Any], *args: Any, message: str = "", hint: str = "") -> Check:
    """A check that asks the recipes' validator (aivm/recipes/values.py), so lint and build
    refuse the same values; `message`/`hint` (formatted with the value) replace its words."""
    def check(value: Any) -> Problem:
        try:
            fn(value, *args)
        except AivmError as exc:
            return (message.format(value=value) or exc.message), (hint or exc.hint)
        return None
    return check


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


name = via(values.name, "name", values.NAME_LIMIT, message="bad name {value!r}",
           hint=f"use 1-{values.NAME_LIMIT} letters, digits, '-', '_' or '.', starting with a "
                "letter or digit")
user = via(values.user, message="bad user name {value!r}",
           hint="use a Linux user name: lowercase letters, digits, '-' or '_', at most 32")


def vm_name(value: str) -> Problem:
    """A name that also makes a guest host name (a DNS label) and an ssh alias."""
    from aivm.config.to_graph import guest_hostname

    problem = name(value)
    if problem is None and values.HOSTNAME.fullmatch(guest_hostname(value)) is None:
        return (f"VM name {value!r} does not make a host name",
                "end the name with a letter or digit")
    return problem


def cpus(value: int) -> Problem:
    if value < 1:
        return f"cpus must be at least 1, not {value}", "set cpus = 1 or more"
    return at_most("cpus", values.CPUS[1])(value)


def memory_mib(value: int) -> Problem:
    if value < MIN_MEMORY_MIB:
        return (f"memory_mib = {value} is too small to boot a guest",
                f"set memory_mib to at least {MIN_MEMORY_MIB}")
    total = host_memory_mib()
    if total and value > total:
        return (f"memory_mib = {value} is more than this host has ({total} MiB)",
                f"set memory_mib to at most {total // 2} (half the host) or so")
    return at_most("memory_mib", values.MEMORY_MIB[1])(value)


def positive(what: str, most: int = 0) -> Check:
    def check(value: int) -> Problem:
        if value < 1:
            return f"{what} must be at least 1, not {value}", f"set {what} = 1 or more"
        return at_most(what, most)(value) if most else None
    return check


def at_most(what: str, most: int) -> Check:
    def check(value: int) -> Problem:
        return None if value <= most else (f"{what} = {value} is more than aivm takes ({most})",
                                           f"set {what} to at most {most}")
    return check


def non_negative(what: str) -> Check:
    def check(value: int) -> Problem:
        return None if value >= 0 else (f"{what} must not be negative", f"set {what} = 0 or more")
    return check


timezone = via(values.timezone, message="bad timezone {value!r}",
               hint="use a tz database name such as UTC or Europe/Berlin")


def bridge(value: str) -> Problem:
    if len(value) > IFNAMSIZ:
        return (f"bridge name {value!r} is {len(value)} characters; Linux allows {IFNAMSIZ}",
                f"shorten it, e.g. {value[:IFNAMSIZ]!r}")
    return via(values.bridge)(value)


def cidr(value: str) -> Problem:
    """A guest subnet: the friendly words for the common slips, then the recipe's rule."""
    import ipaddress

    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"{value!r} is not a CIDR subnet", "write it as address/prefix, e.g. 10.77.0.0/24"
    if net.version != 4:
        return f"{value!r} is not an IPv4 subnet", "aivm networks are IPv4, e.g. 10.77.0.0/24"
    if str(net) != value:
        return f"{value!r} has host bits set", f"did you mean {str(net)!r}?"
    return via(values.guest_subnet)(value)


ipv4 = via(values.ipv4, message="{value!r} is not an IPv4 address",
           hint="write it as four numbers, e.g. 10.77.0.1")


def ports(value: tuple[int, ...]) -> Problem:
    bad = [p for p in value if not 1 <= p <= 65535]
    return (f"port {bad[0]} is out of range", "ports are 1-65535") if bad else None


def bind_address(value: str) -> Problem:
    """A published port's host address: an IP address literal (loopback by default)."""
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return (f"{value!r} is not an IP address", "bind published ports to an address such as "
                "127.0.0.1 (the default) or ::1")
    return None


cidrs = via(values.networks, "extra_blocked",
            hint="write ranges as address/prefix with the host bits zero, e.g. 192.168.0.0/16")


def lan_endpoints(proto: str) -> Check:
    """`allow_lan_<proto>`: the recipe's own parser, so lint and build agree."""
    def parse(value: tuple[str, ...]) -> None:
        from aivm.recipes.nft_ruleset import lan_rules

        lan_rules(value, proto)
    return via(parse)


def egress(field: str) -> Check:
    """`[networks.egress]` values: the recipe's own parsers, so lint and build agree."""
    def parse(value: Any) -> None:
        from aivm.recipes.egress import check_field

        check_field(field, value)
    return via(parse)


def provision(field: str) -> Check:
    """`[[provisions]]` values: the recipe's own parsers, so lint and build agree."""
    def parse(value: Any) -> None:
        from aivm.recipes.provision import check_field

        check_field(field, value)
    return via(parse)


def sha256(value: str) -> Problem:
    return None if value == "" else via(
        values.sha256, message="sha256 {value!r} is not 64 lowercase hex digits",
        hint="copy the digest from the image's SHA256SUMS file, or leave it empty to be told "
             "later")(value)


def url(value: str) -> Problem:
    """What the fetch recipe takes (http(s)/file URL, absolute path), or ~/... or empty."""
    if value == "":
        return None
    if value.startswith("~"):
        return via(values.host_path, "url")(value)
    if not value.startswith(("https://", "http://", "file://", "/")):
        return (f"url {value!r} is not http(s)://, file:// or an absolute path",
                "give a full URL to the image, or the absolute path of a local image file")
    return via(values.abs_path if value.startswith("/") else values.url, "url")(value)


def host_path(value: str) -> Problem:
    if not value.startswith(("/", "~")):
        return (f"host_path {value!r} is not absolute",
                "write an absolute path or one starting with ~")
    return via(values.host_path, "host_path")(value)


def guest_dst(value: str) -> Problem:
    return None if value == "" else via(
        values.abs_path, "guest_dst", message="guest_dst {value!r} is not absolute",
        hint="write an absolute guest path without quotes or backslashes, or leave it "
             "empty")(value)


def paths(what: str) -> Check:
    """A list of host paths (`[sync] paths`): none empty, each one line."""
    def check(value: tuple[str, ...]) -> Problem:
        if "" in value:
            return "a path in the list is empty", "remove the empty entry"
        return next(filter(None, (via(values.host_path, what)(v) for v in value)), None)
    return check


def optional_name(value: str) -> Problem:
    return None if value == "" else name(value)


def store_root(value: str) -> Problem:
    return None if value == "" else via(values.host_path, "store root")(value)


def cache_url(value: str) -> Problem:
    """A binary cache URL (aivm/cache/backends.py), "" for none."""
    return None if value == "" else via(
        values.cache_url, message="cache URL {value!r} is not file:///PATH or "
        "oci://REGISTRY/REPOSITORY", hint="e.g. file:///srv/aivm-cache or oci://ghcr.io/team/aivm",
    )(value)


def remote_host(value: str) -> Problem:
    """A VM's `host`: "" (this machine) or user@server (aivm/remote/address.py)."""
    if value == "":
        return None
    from aivm.remote.address import HINT, problem

    found = problem(value)
    return (found, HINT) if found else None


def copy_url(value: str) -> Problem:
    """A `store copy --to` target: a cache URL or another host's store (ssh://)."""
    if value.startswith("ssh://"):
        from aivm.remote.address import problem

        found = problem(value)
        return (found, "e.g. ssh://user@server or ssh://user@server:2222") if found else None
    return cache_url(value)


def cache_urls(value: tuple[str, ...]) -> Problem:
    return next((p for p in map(cache_url, value) if p), None)


def trusted_keys(value: tuple[str, ...]) -> Problem:
    key = via(values.trusted_key, message="trusted key {value!r} is not NAME:BASE64 of an "
              "ed25519 public key", hint="copy the line `aivm store keygen` printed")
    return next(filter(None, map(key, value)), None)


def schema_version(value: int) -> Problem:
    if value < 1:
        return (f"schema_version {value} is not valid",
                f"set schema_version = {schema.SCHEMA_VERSION}")
    return None


FIELD_CHECKS: dict[tuple[type, str], Check] = {
    (schema.Vm, "name"): vm_name,
    (schema.Vm, "user"): user,
    (schema.Vm, "cpus"): cpus,
    (schema.Vm, "memory_mib"): memory_mib,
    (schema.Vm, "disk_gib"): positive("disk_gib", values.DISK_GIB[1]),
    (schema.Vm, "image"): name,
    (schema.Vm, "host"): remote_host,
    (schema.Vm, "network"): name,
    (schema.Vm, "timezone"): timezone,
    (schema.Vm, "uid"): non_negative("uid"),
    (schema.Vm, "gid"): non_negative("gid"),
    (schema.Vm, "ssh_pubkey"): via(values.ssh_path, "ssh_pubkey"),
    (schema.Vm, "ssh_privkey"): via(values.ssh_path, "ssh_privkey"),
    (schema.Vm, "packages"): via(values.packages, "packages"),
    (schema.Port, "guest"): lambda v: ports((v,)),
    (schema.Port, "host"): lambda v: None if v == 0 else ports((v,)),
    (schema.Port, "address"): lambda v: bind_address(v),
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
    (schema.Egress, "allow"): egress("allow"),
    (schema.Egress, "allow_cidrs"): egress("allow_cidrs"),
    (schema.Egress, "presets"): egress("presets"),
    (schema.Egress, "upstream_dns"): egress("upstream_dns"),
    (schema.Image, "name"): name,
    (schema.Image, "sha256"): sha256,
    (schema.Image, "url"): url,
    (schema.Image, "suite"): name,
    (schema.Image, "mirror"): via(values.url, "mirror"),
    (schema.Image, "packages"): via(values.packages, "packages"),
    (schema.Image, "image_size_gib"): positive("image_size_gib", values.IMAGE_SIZE_GIB[1]),
    (schema.Provision, "name"): name,
    (schema.Provision, "base"): name,
    (schema.Provision, "packages"): provision("packages"),
    (schema.Provision, "run"): provision("run"),
    (schema.Provision, "apt_sources"): provision("apt_sources"),
    (schema.Provision, "allow"): provision("allow"),
    (schema.ProvisionFile, "src"): via(values.local_path, "files.src"),
    (schema.ProvisionFile, "dest"): provision("dest"),
    (schema.ProvisionFile, "mode"): provision("mode"),
    (schema.Attachment, "host_path"): host_path,
    (schema.Attachment, "vm"): name,
    (schema.Attachment, "guest_dst"): guest_dst,
    (schema.Sync, "paths"): paths("sync path"),
    (schema.StoreSettings, "root"): store_root,
    (schema.StoreSettings, "substituters"): cache_urls,
    (schema.StoreSettings, "push_to"): cache_url,
    (schema.StoreSettings, "trusted_keys"): trusted_keys,
    (schema.StoreSettings, "secret_key_file"): store_root,
    (schema.Behavior, "verbosity"): non_negative("verbosity"),
    (schema.Config, "active_vm"): optional_name,
    (schema.Config, "schema_version"): schema_version,
}
