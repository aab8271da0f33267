"""Strict validation of the values a recipe puts into a rendered file.

Every value that reaches a template passes one of these checks first, so no
name, path or address can carry XML, YAML or nft syntax. A bad value is an
AivmError with reason "invalid-param" that names the param and says why.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aivm.errors import AivmError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?")
TIMEZONE = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
SHA256 = re.compile(r"[0-9a-f]{64}")
URL = re.compile(r"(https?|file)://[^\s'\"<>\\`]+")
CACHE_URL = re.compile(r"file:///[^\s'\"]*|oci://[^\s/'\"]+/[^\s'\"]+")
TRUSTED_KEY = re.compile(r"[^:\s]+:[A-Za-z0-9+/]{43}=")  # NAME:base64 of 32 bytes (ed25519)
SSH_KEY = re.compile(r"(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) "
                     r"[A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?")
_PATH_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f'\"\\`]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SSH_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f'\"\\`%]")
# The ranges a recipe takes; config/checks.py reports them at the key's own line.
CPUS = (1, 64)
MEMORY_MIB = (128, 1 << 20)
DISK_GIB = (1, 16384)
IMAGE_SIZE_GIB = (1, 1024)
NAME_LIMIT = 63            # a DNS label: VM names become guest host names
IFNAMSIZ = 15              # Linux interface names: 15 characters and a NUL
# A guest subnet must lie in one of these (RFC 1918 private ranges and the RFC 6598
# shared address space that CGNAT and VPNs such as Tailscale use): anything else is
# the host's loopback, link-local (cloud metadata), multicast, or someone else's
# public addresses, which the host would then route to the guest bridge.
GUEST_SUBNETS = tuple(ipaddress.IPv4Network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))
# Interface names the kernel or the host's own networking owns.
RESERVED_BRIDGES = ("lo", ".", "..")


def invalid(what: str, value: Any, why: str, hint: str = "") -> AivmError:
    return AivmError(f"invalid {what}: {value!r} ({why})",
                     hint=hint or f"fix {what} in the config", reason="invalid-param")


def _match(pattern: re.Pattern[str], what: str, value: Any, why: str, limit: int = 64) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value) or len(value) > limit:
        raise invalid(what, value, why)
    return value


def name(value: Any, what: str = "name", limit: int = 64) -> str:
    """A VM, network or image name: letters, digits, '.', '_', '-'; 64 chars at most
    (the config's own names: NAME_LIMIT)."""
    return _match(NAME, what, value, "use letters, digits, '.', '_' and '-', starting with a "
                  f"letter or digit, {limit} characters at most", limit=limit)


def bridge(value: Any, what: str = "bridge") -> str:
    """A Linux interface name of 15 characters at most, never the loopback device."""
    _match(NAME, what, value, "an interface name: letters, digits, '.', '_', '-', "
           f"{IFNAMSIZ} characters at most", limit=IFNAMSIZ)
    if value in RESERVED_BRIDGES:
        raise invalid(what, value, "the host's loopback device, never a guest bridge",
                      hint="name a bridge of its own for the network, e.g. virbr-aivm")
    return str(value)


def guest_subnet(value: Any, what: str = "subnet") -> ipaddress.IPv4Network:
    """The IPv4 subnet of a guest network: /30 or larger, inside GUEST_SUBNETS."""
    net = network(value, what)
    if net.version != 4 or net.prefixlen > 30:
        raise invalid(what, value, "an IPv4 network of /30 or larger")
    if not any(net.subnet_of(r) for r in GUEST_SUBNETS):
        raise invalid(what, value, "not inside a private range: the host would route "
                      "these addresses (loopback, link-local, multicast or public ones) to the "
                      "guests", hint="use a subnet inside 10.0.0.0/8, 172.16.0.0/12, "
                      "192.168.0.0/16 or 100.64.0.0/10, e.g. 10.77.0.0/24")
    assert isinstance(net, ipaddress.IPv4Network)
    return net


def hostname(value: Any, what: str = "hostname") -> str:
    return _match(HOSTNAME, what, value, "a host name label: letters, digits and '-'", limit=63)


def user(value: Any, what: str = "user") -> str:
    return _match(USER, what, value, "a Linux user name: lower-case letters, digits, '_', '-'",
                  limit=32)


def package(value: Any, what: str = "package") -> str:
    return _match(PACKAGE, what, value, "a Debian package name, optionally =version", limit=128)


def packages(values: Any, what: str = "packages") -> tuple[str, ...]:
    return tuple(package(v, what) for v in _sequence(values, what))


def timezone(value: Any, what: str = "timezone") -> str:
    return _match(TIMEZONE, what, value, "a tz database name such as UTC or Europe/Berlin")


def mac(value: Any, what: str = "mac") -> str:
    return _match(MAC, what, value, "six lower-case hex pairs separated by ':'")


def sha256(value: Any, what: str = "sha256") -> str:
    return _match(SHA256, what, value, "64 lower-case hex digits")


def url(value: Any, what: str = "url") -> str:
    return _match(URL, what, value, "an http, https or file URL without spaces or quotes",
                  limit=2048)


def cache_url(value: Any, what: str = "cache URL") -> str:
    """A binary cache (aivm/cache/backends.py open_cache): file:///PATH or oci://HOST/REPO,
    split as open_cache splits it (a repository of slashes only, or after '?', is none)."""
    from urllib.parse import urlsplit

    why = "not file:///PATH or oci://REGISTRY/REPOSITORY"
    parts = urlsplit(_match(CACHE_URL, what, value, why, limit=4096))
    if parts.scheme == "oci" and not parts.path.strip("/"):
        raise invalid(what, value, why)
    return str(value)


def trusted_key(value: Any, what: str = "trusted key") -> str:
    """A signer's public key as `aivm store keygen` prints it (aivm/cache/sign.py)."""
    return _match(TRUSTED_KEY, what, value, "not NAME:BASE64 of an ed25519 public key",
                  limit=4096)


def integer(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(what, value, f"an integer from {low} to {high}")
    return value


def boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(what, value, "true or false")
    return value


def port(value: Any, what: str = "port") -> int:
    return integer(value, what, 1, 65535)


def ports(values: Any, what: str = "ports") -> tuple[int, ...]:
    """A set of ports, sorted and without repeats (its order never matters)."""
    return tuple(sorted({port(v, what) for v in _sequence(values, what)}))


def ipv4(value: Any, what: str = "address") -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except (ValueError, TypeError):
        raise invalid(what, value, "an IPv4 address such as 10.77.0.1") from None


def network(value: Any, what: str = "subnet") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=True)
    except (ValueError, TypeError):
        raise invalid(what, value, "a CIDR network such as 10.77.0.0/24, host bits zero") from None


def networks(values: Any, what: str = "ranges") -> tuple[Any, ...]:
    return tuple(network(v, what) for v in _sequence(values, what))


def abs_path(value: Any, what: str = "path") -> str:
    """An absolute path; spaces are fine, quotes, backslashes and control characters are not."""
    if (not isinstance(value, str) or not value.startswith("/") or _PATH_FORBIDDEN.search(value)
            or len(value) > 4096):
        raise invalid(what, value, "an absolute path without quotes, backslashes or newlines")
    return value


def host_path(value: Any, what: str = "path") -> str:
    """A host path from the config: absolute, `~` or `~/...`, one line of text. Not
    `~name/...`: another account's home may not exist here, and expanding it then fails
    at activation instead of here."""
    if (not isinstance(value, str) or not (value == "~" or value.startswith(("/", "~/")))
            or len(value) > 4096 or _CONTROL.search(value)):
        raise invalid(what, value, "an absolute path (or ~/...) on one line, without control "
                      "characters", hint="write another account's home as an absolute path")
    return value


def local_path(value: Any, what: str = "path") -> str:
    """A host file from the config that may be relative (to the config's folder): one line."""
    if (not isinstance(value, str) or not value.strip() or len(value) > 4096
            or _CONTROL.search(value)):
        raise invalid(what, value, "a path on one line, without control characters")
    return value


def ssh_path(value: Any, what: str = "path") -> str:
    """A host path that ends up in ssh_config (IdentityFile): besides host_path, no quotes,
    backslashes or '%' (ssh_config has no portable escape for them; '%' starts a token) and
    no surrounding spaces. Spaces inside are quoted by aivm/guest/ssh.py."""
    path = host_path(value, what)
    if _SSH_FORBIDDEN.search(path) or path != path.strip():
        raise invalid(what, path, "ssh_config cannot hold quotes, backslashes, '%' or "
                      "surrounding spaces in a path",
                      hint=f"move the file to a plain path and set {what} to it")
    return path


def read_small_file(path: Path, what: str, limit: int = 1 << 20) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. A device (/dev/zero), FIFO or
    socket is refused without reading it: opened non-blocking, checked with fstat."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise invalid(what, str(path), f"cannot open it: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        regular_file(os.fstat(fd), path, what)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise invalid(what, str(path), f"larger than {limit} bytes")
    return data


def regular_file(st: os.stat_result, path: Path, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise invalid(what, str(path), "not a regular file (a device, FIFO, socket or folder)",
                      hint=f"point {what} at a regular file")


def ssh_keys(text: str, what: str = "ssh public key") -> tuple[str, ...]:
    """The public keys of an authorized_keys-style file: one per non-comment line."""
    found = tuple(line.strip() for line in text.splitlines()
                  if line.strip() and not line.lstrip().startswith("#"))
    if not found:
        raise invalid(what, text[:60], "the file holds no public key",
                      hint="point ssh_pubkey at a .pub file (ssh-keygen -t ed25519)")
    for key in found:
        _match(SSH_KEY, what, key, "one public key per line: type, base64 data, comment",
               limit=16384)
    return found


def one_of(value: Any, choices: Iterable[str], what: str) -> str:
    allowed = tuple(choices)
    if value not in allowed:
        raise invalid(what, value, "one of " + ", ".join(allowed))
    return str(value)


def _sequence(values: Any, what: str) -> list[Any]:
    if isinstance(values, str) or not isinstance(values, list | tuple | set | frozenset):
        raise invalid(what, values, "a list")
    return list(values)
