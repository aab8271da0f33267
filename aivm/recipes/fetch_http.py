"""HTTP(S) GET for the fetch recipe: basic auth from the URL, only safe redirects.

Kept apart from fetch.py so that urllib.request is imported only when
something is really downloaded.
"""

from __future__ import annotations

import logging
import urllib.request
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from aivm.errors import BuildError
from aivm.urls import redact

log = logging.getLogger("aivm.fetch")


def open_url(url: str, timeout: float, have: int = 0) -> Any:
    """urlopen with basic auth from the URL's userinfo and only safe redirects; with
    `have`, ask for the bytes from there on (a resume)."""
    plain, auth = _split_auth(url)
    request = urllib.request.Request(plain, headers={"User-Agent": "aivm"})
    if auth:
        request.add_unredirected_header("Authorization", auth)
    if have:
        request.add_header("Range", f"bytes={have}-")
    opener = urllib.request.build_opener(_SafeRedirects(url, auth))
    return opener.open(request, timeout=timeout)


def _split_auth(url: str) -> tuple[str, str]:
    """(url without userinfo, the Basic Authorization header value or "")."""
    import base64

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, ""
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows http(s) redirects only, never https -> http; says where each one led.
    The Authorization header goes to the first URL's scheme, host and port only."""

    def __init__(self, url: str, auth: str) -> None:
        self.url, self.auth = url, auth

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        newurl = urljoin(req.full_url, newurl)
        old, new = urlsplit(req.full_url), urlsplit(newurl)
        if new.scheme not in ("http", "https") or (old.scheme, new.scheme) == ("https", "http"):
            raise BuildError(f"download of {redact(self.url)} was redirected to "
                             f"{redact(newurl)}, which aivm does not follow "
                             f"({old.scheme} to {new.scheme or 'no scheme'})",
                             hint="pin a URL that serves the image over http(s) directly "
                                  "(https stays https)", reason="download-redirect")
        other_host = new.netloc.rpartition("@")[2] != old.netloc
        (log.warning if other_host else log.info)(
            "%s redirected (HTTP %s) to %s", redact(req.full_url), code, redact(newurl))
        redirected = super().redirect_request(req, fp, code, msg, headers, newurl)
        if redirected is not None and self.auth and _same_origin(self.url, newurl):
            redirected.add_unredirected_header("Authorization", self.auth)
        return redirected


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


