"""Where a remote host is: `user@server`, `ssh://[user@]host[:port]` or a libvirt
`qemu+ssh://[user@]host[:port]/system` URI, parsed into one `Remote`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from aivm.errors import ConfigError

_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
HINT = "write user@server, ssh://user@server[:port] or qemu+ssh://user@server[:port]/system"


@dataclass(frozen=True)
class Remote:
    host: str
    user: str = ""
    port: int = 22

    @property
    def destination(self) -> str:
        """What ssh is given: `user@host` (or just `host`: ssh's own default user)."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def label(self) -> str:
        """How aivm names the host to a person (plan steps, status)."""
        return self.destination + (f":{self.port}" if self.port != 22 else "")

    @property
    def libvirt_uri(self) -> str:
        """libvirt's remote driver through the same host (qemu+ssh)."""
        port = f":{self.port}" if self.port != 22 else ""
        return f"qemu+ssh://{self.destination}{port}/system"


def problem(text: str) -> str | None:
    """Why `text` is not a remote host, or None."""
    try:
        parse(text)
    except ConfigError as exc:
        return exc.message
    return None


def parse(text: str) -> Remote:
    """`user@server`, `server`, `ssh://[user@]host[:port]` or `qemu+ssh://...[/system]`."""
    if "://" not in text:
        text = f"ssh://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("ssh", "qemu+ssh") or parts.query or parts.fragment:
        raise _bad(text)
    if parts.path not in ("", "/") and not (parts.scheme == "qemu+ssh" and
                                            parts.path == "/system"):
        raise _bad(text)
    try:
        port = parts.port or 22
    except ValueError as exc:
        raise _bad(text) from exc
    user, host = parts.username or "", parts.hostname or ""
    if parts.password is not None or not _HOST.fullmatch(_bracketed(host)) \
            or (user and not _USER.fullmatch(user)):
        raise _bad(text)
    return Remote(host, user, port)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bad(text: str) -> ConfigError:
    return ConfigError(f"remote host {text!r} is not user@server", hint=HINT,
                       reason="remote-host")
