"""Strict validation of the values a recipe puts into a rendered file.

Every value that reaches a template passes one of these checks first, so no
name, path or address can carry XML, YAML or nft syntax. A bad value is an
AivmError with reason "invalid-param" that names the param and says why.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
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
SSH_KEY = re.compile(r"(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) "
                     r"[A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?")
_PATH_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f'\"\\`]")


def invalid(what: str, value: Any, why: str, hint: str = "") -> AivmError:
    return AivmError(f"invalid {what}: {value!r} ({why})",
                     hint=hint or f"fix {what} in the config", reason="invalid-param")


def _match(pattern: re.Pattern[str], what: str, value: Any, why: str, limit: int = 64) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value) or len(value) > limit:
        raise invalid(what, value, why)
    return value


def name(value: Any, what: str = "name") -> str:
    """A VM, network or image name: letters, digits, '.', '_', '-'; 64 chars at most."""
    return _match(NAME, what, value, "use letters, digits, '.', '_' and '-', starting with a "
                  "letter or digit, 64 characters at most")


def bridge(value: Any, what: str = "bridge") -> str:
    """A Linux interface name: a name of 15 characters at most."""
    return _match(NAME, what, value, "an interface name: letters, digits, '.', '_', '-', "
                  "15 characters at most", limit=15)


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
