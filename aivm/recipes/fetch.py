"""fetch: a base image downloaded by URL and pinned by sha256 (a fixed-output node).

The key is the pinned digest alone. Supports http(s) with resume (HTTP Range)
into a partial file kept beside the entry, `file://` URLs and plain absolute
paths. The sha256 is checked before anything is committed: a mismatch shows
both digests and leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from aivm.errors import AivmError, BuildError
from aivm.graph.node import BuildContext, Node
from aivm.recipes import values
from aivm.recipes.base import RecipeBase

CHUNK = 1 << 20
RETRIES = 3
TIMEOUT = 30.0


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
        if source.startswith("/"):
            values.abs_path(source, "image path")
        else:
            values.url(source, "image url")
        return {"url": source, "sha256": values.sha256(node.fixed_output, "image sha256")}

    def build(self, ctx: BuildContext, into: Path) -> None:
        v = self.check(ctx.node)
        part = partial_path(into, v["sha256"])
        if v["url"].startswith(("http://", "https://")):
            download(v["url"], part, ctx.progress)
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
            raise values.invalid("image url", source, "a file URL names no host")
        source = unquote(parsed.path)
    return Path(source)


def copy_local(source: Path, part: Path, progress: Any) -> None:
    try:
        total = source.stat().st_size
        with open(source, "rb") as src, open(part, "wb") as dst:
            _pump(src, dst, progress, total)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise BuildError(f"cannot read {source}: {exc.strerror}", reason="download-failed",
                         hint="check the image path in the config") from exc


def download(url: str, part: Path, progress: Any) -> None:
    """Fetch `url` into `part`, resuming from its current size; retry a broken transfer."""
    for attempt in range(RETRIES + 1):
        try:
            _transfer(url, part, progress)
            return
        except _Interrupted as exc:
            if attempt == RETRIES:
                raise BuildError(f"download of {url} kept breaking off: {exc}",
                                 hint="run the build again; it resumes where it stopped",
                                 reason="download-failed") from None


class _Interrupted(Exception):
    pass


def _transfer(url: str, part: Path, progress: Any) -> None:
    import http.client
    import urllib.error
    import urllib.request

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "aivm"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already whole
            return
        raise BuildError(f"download of {url} failed: HTTP {exc.code} {exc.reason}",
                         hint="check the image url in the config",
                         reason="download-failed") from None
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        raise BuildError(f"cannot reach {url}: {why}",
                         hint="check the url and the network, or use a local file path",
                         reason="download-failed") from None
    with response:
        resumed = response.status == 206 and have > 0
        length = response.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length else None
        if resumed and progress:
            progress(have, total)
        with open(part, "ab" if resumed else "wb") as out:
            try:
                got = _pump(response, out, progress, total)
            except (OSError, http.client.HTTPException) as exc:
                raise _Interrupted(str(exc) or type(exc).__name__) from None
        if length and got < int(length):
            raise _Interrupted(f"got {got} of {length} bytes")


def _pump(src: BinaryIO, dst: BinaryIO, progress: Any, total: int | None) -> int:
    done = 0
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        done += len(chunk)
        if progress:
            progress(len(chunk), total)
    return done


def verify(part: Path, expected: str, url: str) -> None:
    digest = sha256_file(part)
    if digest != expected:
        part.unlink(missing_ok=True)
        raise BuildError(f"sha256 mismatch for {url}: expected {expected}, got {digest}",
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
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(source, timeout=TIMEOUT) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, OSError) as exc:
            raise AivmError(f"cannot read {source}: {exc}", reason="download-failed",
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
