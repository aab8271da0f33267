"""fetch: a base image downloaded by URL and pinned by sha256 (a fixed-output node).

The key is the pinned digest alone, never the URL. Supports http(s) with
resume (HTTP Range) into a partial file kept beside the entry, `file://` URLs
and plain absolute paths. The sha256 is checked before anything is committed:
a mismatch shows both digests and leaves the store as it was.

What a hostile or broken server can do is bounded: redirects are followed to
http(s) only and never from https down to http, each one is reported with
where it led; a password in the URL is sent as HTTP basic auth to that URL's
own host only, and every URL aivm prints or stores is redacted (aivm/urls.py);
a transfer slower than `Limits.min_rate` over `Limits.window` seconds, or
longer than `Limits.deadline` in all, stops with an error (the partial file
is kept, so the next build resumes).
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from aivm.errors import AivmError, BuildError
from aivm.graph.node import BuildContext, ByteProgress, Node
from aivm.recipes import values
from aivm.recipes.base import RecipeBase
from aivm.urls import redact, redact_text

log = logging.getLogger("aivm.fetch")

CHUNK = 1 << 20
RETRIES = 3
TIMEOUT = 30.0


@dataclass(frozen=True)
class Limits:
    """When a download gives up: no byte for `stall` seconds, fewer than `min_rate` bytes/s
    over any `window` seconds, or `deadline` seconds in all (retries included)."""

    stall: float = TIMEOUT
    min_rate: float = 10 * 1024
    window: float = 60.0
    deadline: float = 6 * 3600.0


LIMITS = Limits()


class Fetch(RecipeBase):
    kind: ClassVar[str] = "fetch"
    version: ClassVar[int] = 1
    required: ClassVar[tuple[str, ...]] = ("url",)

    def check(self, node: Node) -> dict[str, Any]:
        p = super().check(node)
        if not node.fixed_output:
            raise AivmError(f"node {node.name}: a fetched image needs a pinned sha256",
                            hint="set sha256 for this image in the config (`aivm image pin`)",
                            reason="unpinned")
        source = str(p["url"])
        try:
            if source.startswith("/"):
                values.abs_path(source, "image path")
            else:
                values.url(source, "image url")
        except AivmError as exc:
            raise AivmError(exc.message.replace(repr(source), repr(redact(source))),
                            hint=exc.hint, reason=exc.reason) from None
        return {"url": source, "sha256": values.sha256(node.fixed_output, "image sha256")}

    def build(self, ctx: BuildContext, into: Path) -> None:
        v = self.check(ctx.node)
        part = partial_path(into, v["sha256"])
        if v["url"].startswith(("http://", "https://")):
            download(v["url"], part, ctx.progress, LIMITS)
        else:
            copy_local(local_source(v["url"]), part, ctx.progress)
        verify(part, v["sha256"], v["url"])
        os.replace(part, into / "disk.qcow2")


def partial_path(into: Path, sha256: str) -> Path:
    """Where a download in progress lives: the store's cache when there is one (so a
    later build resumes it), else inside the entry being built."""
    cache = into.parent / "cache"
    if cache.is_dir():
        (cache / "partial").mkdir(exist_ok=True)
        return cache / "partial" / f"{sha256}.part"
    return into / ".disk.part"


def local_source(source: str) -> Path:
    if source.startswith("file://"):
        from urllib.parse import unquote, urlparse

        parsed = urlparse(source)
        if parsed.netloc not in ("", "localhost"):
            raise values.invalid("image url", redact(source), "a file URL names no host")
        source = unquote(parsed.path)
    return Path(source)


def copy_local(source: Path, part: Path, progress: ByteProgress | None) -> None:
    try:
        total = source.stat().st_size
        with open(source, "rb") as src, open(part, "wb") as dst:
            _pump(src, dst, progress, total)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise BuildError(f"cannot read {source}: {exc.strerror}", reason="download-failed",
                         hint="check the image path in the config") from exc


def download(url: str, part: Path, progress: ByteProgress | None,
             limits: Limits = LIMITS) -> None:
    """Fetch `url` into `part`, resuming from its current size; retry a broken transfer."""
    clock = _Clock(limits)
    for attempt in range(RETRIES + 1):
        try:
            _transfer(url, part, progress, clock)
            return
        except _Interrupted as exc:
            if attempt == RETRIES:
                raise BuildError(f"download of {redact(url)} kept breaking off: {exc}",
                                 hint="run the build again; it resumes where it stopped",
                                 reason="download-failed") from None


class _Interrupted(Exception):
    pass


@dataclass
class _Clock:
    """The deadline and the minimum rate of one download, checked after every read."""

    limits: Limits
    started: float = field(default_factory=time.monotonic)
    window_start: float = field(default_factory=time.monotonic)
    window_bytes: int = 0

    def tick(self, url: str, nbytes: int) -> None:
        now = time.monotonic()
        if now - self.started > self.limits.deadline:
            raise _too_slow(url, f"it took longer than {self.limits.deadline:.0f} s in all")
        self.window_bytes += nbytes
        elapsed = now - self.window_start
        if elapsed >= self.limits.window:
            rate = self.window_bytes / elapsed
            if rate < self.limits.min_rate:
                raise _too_slow(url, f"{rate:.0f} bytes/s over the last {elapsed:.0f} s, "
                                     f"below the minimum of {self.limits.min_rate:.0f} bytes/s")
            self.window_start, self.window_bytes = now, 0


def _too_slow(url: str, why: str) -> BuildError:
    return BuildError(f"download of {redact(url)} is too slow: {why}",
                      hint="check the network or use a nearer mirror; the next build resumes "
                           "where this one stopped", reason="download-too-slow")


def _transfer(url: str, part: Path, progress: ByteProgress | None, clock: _Clock) -> None:
    import http.client
    import urllib.error

    from aivm.recipes import fetch_http

    have = part.stat().st_size if part.exists() else 0
    try:
        response = fetch_http.open_url(url, clock.limits.stall, have)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already whole
            return
        raise BuildError(f"download of {redact(url)} failed: HTTP {exc.code} "
                         f"{redact_text(str(exc.reason))}",
                         hint="check the image url in the config",
                         reason="download-failed") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        why = getattr(exc, "reason", exc)
        raise BuildError(f"cannot reach {redact(url)}: {redact_text(str(why))}",
                         hint="check the url and the network, or use a local file path",
                         reason="download-failed") from None
    with response:
        resumed = response.status == 206 and have > 0
        length = response.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length else None
        if resumed and progress:
            progress.reached(have, total)
        with open(part, "ab" if resumed else "wb") as out:
            try:
                got = _pump(response, out, progress, total, lambda n: clock.tick(url, n))
            except (OSError, http.client.HTTPException) as exc:
                raise _Interrupted(str(exc) or type(exc).__name__) from None
        if length and got < int(length):
            raise _Interrupted(f"got {got} of {length} bytes")


def _pump(src: BinaryIO, dst: BinaryIO, progress: ByteProgress | None, total: int | None,
          tick: Any = None) -> int:
    """Copy until EOF, reporting each piece as an increment; `tick(n)` may stop a slow copy."""
    done = 0
    read = getattr(src, "read1", src.read)  # read1: returns what arrived, not a full CHUNK
    while chunk := read(CHUNK):
        dst.write(chunk)
        done += len(chunk)
        if progress:
            progress.advanced(len(chunk), total)
        if tick:
            tick(len(chunk))
    return done


def verify(part: Path, expected: str, url: str) -> None:
    digest = sha256_file(part)
    if digest != expected:
        part.unlink(missing_ok=True)
        raise BuildError(f"sha256 mismatch for {redact(url)}: expected {expected}, got {digest}",
                         hint="the file changed upstream or the pin is wrong; re-pin only if "
                              "you trust the new file", reason="digest-mismatch")


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def sums_text(source: str) -> str:
    """A SHA256SUMS file's text, from a URL or a local path."""
    if source.startswith(("http://", "https://")):
        import http.client
        import urllib.error

        from aivm.recipes import fetch_http

        try:
            with fetch_http.open_url(source, TIMEOUT) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise AivmError(f"cannot read {redact(source)}: {redact_text(str(exc))}",
                            reason="download-failed",
                            hint="pass --sums with a local copy of the SHA256SUMS file") from exc
    try:
        return local_source(source).read_text()
    except OSError as exc:
        raise AivmError(f"cannot read {source}: {exc.strerror}", reason="download-failed",
                        hint="check the path of the SHA256SUMS file") from exc


def pin_from_sha256sums(url: str, sums_text: str) -> str:
    """The sha256 that a SHA256SUMS file lists for the basename of `url`."""
    from urllib.parse import unquote, urlparse

    wanted = posixpath.basename(unquote(urlparse(url).path))
    for line in sums_text.splitlines():
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *]?(.+)", line.strip())
        if match and posixpath.basename(match.group(2).strip()) == wanted:
            return match.group(1).lower()
    raise AivmError(f"{wanted or url} is not listed in the SHA256SUMS file",
                    hint="check that the sums file belongs to the same release folder",
                    reason="pin-not-found")
