"""URLs as aivm shows and stores them: with their secrets replaced by `***`.

A URL may carry a password (`https://user:pw@host/`), a token as its user
(`https://TOKEN@host/`) or tokens in its query (`?X-Amz-Signature=...`).
Whatever aivm prints (errors, notes) or stores outside the config (store
manifests, which other users may read) uses `redact(url)`: the user name is
kept when a password follows it, every query value is replaced, the rest of
the URL is unchanged, so a user can still tell which file was meant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"
_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact(url: str) -> str:
    """`url` with its userinfo secret and its query values replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    if not parts.scheme or not parts.netloc and not parts.query:
        return url
    netloc = _redact_netloc(parts.netloc)
    query = "&".join(_redact_pair(p) for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_netloc(netloc: str) -> str:
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{HIDDEN}@{host}" if colon else f"{HIDDEN}@{host}"


def _redact_pair(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    return f"{name}={HIDDEN}" if eq else HIDDEN


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params with every URL-looking string value redacted (for manifests)."""
    return {k: redact(v) if isinstance(v, str) and "://" in v else v for k, v in params.items()}


def redact_text(text: str) -> str:
    """Free text (an error from a library) with every URL in it redacted."""
    return _IN_TEXT.sub(lambda m: redact(m.group(0)), text)
