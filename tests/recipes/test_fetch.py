"""The fetch recipe against a real HTTP server on 127.0.0.1 (loopback only)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aivm.errors import AivmError, BuildError
from aivm.graph.node import BuildContext, Node
from aivm.graph.store import Store
from aivm.recipes import REGISTRY
from aivm.recipes.fetch import pin_from_sha256sums
from tests.recipes.helpers import build_nodes

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Served:
    files: dict[str, bytes]
    cut: int = 0                       # how many responses to break off early
    ranges: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)   # path -> Location
    auths: list[str] = field(default_factory=list)            # Authorization headers seen
    piece: int = 0                     # with `pause`: send the body in pieces this big ...
    pause: float = 0.0                 # ... this many seconds apart


class Handler(http.server.BaseHTTPRequestHandler):
    served: Served

    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        self.served.auths.append(self.headers.get("Authorization", ""))
        if self.path.split("?")[0] in self.served.redirects:
            self._status(302)
            self.send_header("Location", self.served.redirects[self.path.split("?")[0]])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = self.served.files.get(self.path.split("?")[0])
        self.served.ranges.append(self.headers.get("Range", ""))
        if data is None:
            self._status(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            self._status(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self._status(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.served.cut > 0:
            self.served.cut -= 1
            self.wfile.write(body[: len(data) // 4])
            self.close_connection = True
            return
        self._send(body)

    def _send(self, body: bytes) -> None:
        if not self.served.pause:
            self.wfile.write(body)
            return
        for at in range(0, len(body), self.served.piece):
            self.wfile.write(body[at:at + self.served.piece])
            self.wfile.flush()
            time.sleep(self.served.pause)

    def _status(self, code: int) -> None:
        self.served.statuses.append(code)
        self.send_response(code)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(address: str = "127.0.0.1") -> Iterator[tuple[str, Served]]:
    """An HTTP server on a loopback address (127.0.0.0/8 only)."""
    assert address.startswith("127.")
    served = Served({"/img/disk.img": PAYLOAD})
    handler = type("H", (Handler,), {"served": served})
    httpd = http.server.ThreadingHTTPServer((address, 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    with serving() as served:
        yield served


def fetch_node(url: str, digest: str = DIGEST) -> Node:
    return Node("image.test", "fetch", params={"url": url}, fixed_output=digest)


def fetch(node: Node, into: Path, progress: object = None) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    recipe = REGISTRY.recipe("fetch")
    recipe.preflight(node)
    recipe.build(BuildContext(node, node.fixed_output or "", {}, {}, progress), into)
    return into


@dataclass
class Recorder:
    """A ByteProgress that keeps what it was told, and the position that follows from it."""

    calls: list[tuple[str, int, int | None]] = field(default_factory=list)

    def advanced(self, nbytes: int, total: int | None) -> None:
        self.calls.append(("advanced", nbytes, total))

    def reached(self, position: int, total: int | None) -> None:
        self.calls.append(("reached", position, total))

    @property
    def position(self) -> int:
        at = 0
        for how, n, _ in self.calls:
            at = n if how == "reached" else at + n
        return at


def test_download_success_with_progress(server: tuple[str, Served], tmp_path: Path) -> None:
    base, served = server
    seen = Recorder()
    out = fetch(fetch_node(f"{base}/img/disk.img"), tmp_path / "e", seen)
    assert (out / "disk.qcow2").read_bytes() == PAYLOAD
    assert sorted(p.name for p in out.iterdir()) == ["disk.qcow2"]
    assert {how for how, _, _ in seen.calls} == {"advanced"}
    assert seen.position == len(PAYLOAD)
    assert {t for _, _, t in seen.calls} == {len(PAYLOAD)}
    assert served.statuses == [200]


def test_resume_within_one_build(server: tuple[str, Served], tmp_path: Path) -> None:
    base, served = server
    served.cut = 1
    seen = Recorder()
    out = fetch(fetch_node(f"{base}/img/disk.img"), tmp_path / "e", seen)
    assert (out / "disk.qcow2").read_bytes() == PAYLOAD
    assert served.ranges == ["", f"bytes={len(PAYLOAD) // 4}-"]
    assert served.statuses == [200, 206]
    # the resume says where it starts (a position), then counts on from there
    assert ("reached", len(PAYLOAD) // 4, len(PAYLOAD)) in seen.calls
    assert seen.position == len(PAYLOAD)


def test_resume_in_a_later_build(server: tuple[str, Served], store: Store) -> None:
    base, served = server
    served.cut = 10  # more breaks than one build retries
    node = fetch_node(f"{base}/img/disk.img")
    with pytest.raises(BuildError) as err:
        build_nodes(store, [node])
    assert "kept breaking off" in str(err.value)
    assert store.entries() == []
    partial = store.root / "cache" / "partial" / f"{DIGEST}.part"
    kept = partial.stat().st_size
    assert 0 < kept < len(PAYLOAD)
    served.cut, served.ranges = 0, []
    report = build_nodes(store, [node])
    entry = report.states[node.name].path
    assert (entry / "disk.qcow2").read_bytes() == PAYLOAD
    assert served.ranges == [f"bytes={kept}-"]
    assert not partial.exists()


def test_wrong_digest_shows_both_and_commits_nothing(server: tuple[str, Served],
                                                     store: Store, tmp_path: Path) -> None:
    base, _ = server
    wrong = "0" * 64
    with pytest.raises(BuildError) as err:
        fetch(fetch_node(f"{base}/img/disk.img", wrong), tmp_path / "e")
    assert err.value.reason == "digest-mismatch"
    assert wrong in err.value.message and DIGEST in err.value.message
    with pytest.raises(BuildError) as err:
        build_nodes(store, [fetch_node(f"{base}/img/disk.img", wrong)])
    assert DIGEST in err.value.message
    assert store.entries() == [] and store.temporaries() == []
    assert list((store.root / "cache" / "partial").iterdir()) == []


def test_404(server: tuple[str, Served], tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(BuildError) as err:
        fetch(fetch_node(f"{base}/img/missing.img"), tmp_path / "e")
    assert err.value.reason == "download-failed"
    assert "404" in err.value.message


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(BuildError) as err:
        fetch(fetch_node(f"http://127.0.0.1:{port}/x.img"), tmp_path / "e")
    assert err.value.reason == "download-failed"
    assert "refused" in err.value.message.lower()


@pytest.mark.parametrize("spelling", ["path", "file-url"])
def test_local_file_and_file_url(tmp_path: Path, spelling: str) -> None:
    src = tmp_path / "my images" / "base.qcow2"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    url = str(src) if spelling == "path" else "file://" + str(src).replace(" ", "%20")
    out = fetch(fetch_node(url), tmp_path / "e")
    assert (out / "disk.qcow2").read_bytes() == PAYLOAD


def test_unpinned_and_bad_urls_are_refused() -> None:
    recipe = REGISTRY.recipe("fetch")
    with pytest.raises(AivmError) as err:
        recipe.preflight(Node("image.x", "fetch", params={"url": "https://a.example/x"}))
    assert err.value.reason == "unpinned"
    for url in ("ftp://a.example/x", "relative/path.img", "https://a.example/x y",
                "https://a.example/\"x"):
        with pytest.raises(AivmError) as err:
            recipe.preflight(fetch_node(url))
        assert err.value.reason == "invalid-param", url


def test_pin_from_sha256sums() -> None:
    sums = (f"{'1' * 64} *ubuntu-24.04-server-cloudimg-amd64.tar.gz\n"
            f"{DIGEST.upper()} *ubuntu-24.04-server-cloudimg-amd64.img\n"
            f"{'2' * 64}  ubuntu-24.04-server-cloudimg-arm64.img\n")
    url = ("https://cloud-images.ubuntu.com/releases/noble/release-20260225/"
           "ubuntu-24.04-server-cloudimg-amd64.img")
    assert pin_from_sha256sums(url, sums) == DIGEST
    assert pin_from_sha256sums(url.replace("amd64", "arm64"), sums) == "2" * 64
    with pytest.raises(AivmError) as err:
        pin_from_sha256sums("https://x.example/other.img", sums)
    assert err.value.reason == "pin-not-found"


# -- secrets in URLs, redirects, slow servers (issue 12 item 15) ---------------------------

SECRET_URL = "{base}/img/{name}?X-Amz-Signature=tok3n&x=1"


def _with_secrets(base: str, name: str = "disk.img") -> str:
    return SECRET_URL.format(base=base.replace("http://", "http://alice:s3cret@"), name=name)


def test_password_and_query_tokens_are_never_printed(server: tuple[str, Served],
                                                     tmp_path: Path) -> None:
    base, served = server
    with pytest.raises(BuildError) as err:
        fetch(fetch_node(_with_secrets(base, "missing.img")), tmp_path / "e")
    text = f"{err.value.message} {err.value.hint}"
    assert "404" in text
    assert "s3cret" not in text and "tok3n" not in text
    assert "alice:***@" in text and "X-Amz-Signature=***&x=***" in text
    # the password went to the server as basic auth, not as part of the host name
    assert served.auths == ["Basic " + base64.b64encode(b"alice:s3cret").decode()]


def test_manifest_stores_the_url_redacted_with_the_same_key(server: tuple[str, Served],
                                                            store: Store) -> None:
    base, _ = server
    node = fetch_node(_with_secrets(base))
    report = build_nodes(store, [node])
    state = report.states[node.name]
    manifest = (state.path / "manifest.json").read_text()
    stored = [p for p in store.root.rglob("*") if p.is_file() and p.name != "disk.qcow2"]
    assert len(stored) > 1  # the manifest, and the store's records of the last build
    for path in stored:
        assert b"s3cret" not in path.read_bytes() and b"tok3n" not in path.read_bytes(), path
    assert json.loads(manifest)["params"]["url"] == (
        base.replace("http://", "http://alice:***@") + "/img/disk.img?X-Amz-Signature=***&x=***")
    # the key is the pinned digest alone: a URL with or without secrets keys the same
    assert state.key == build_nodes(store, [fetch_node(f"{base}/img/disk.img")]).states[
        node.name].key


def test_redirect_to_ftp_is_refused(server: tuple[str, Served], tmp_path: Path) -> None:
    base, served = server
    served.redirects["/img/disk.img"] = "ftp://127.0.0.1/img/disk.img?token=abc"
    with pytest.raises(BuildError) as err:
        fetch(fetch_node(f"{base}/img/disk.img"), tmp_path / "e")
    assert err.value.reason == "download-redirect"
    assert "redirected to ftp://127.0.0.1/img/disk.img?token=***" in err.value.message
    assert "(http to ftp)" in err.value.message
    assert not (tmp_path / "e" / "disk.qcow2").exists()


def test_https_to_http_downgrade_is_refused() -> None:
    import urllib.request

    from aivm.recipes.fetch_http import _SafeRedirects

    handler = _SafeRedirects("https://127.0.0.1:1/x.img", "")
    request = urllib.request.Request("https://127.0.0.1:1/x.img")
    with pytest.raises(BuildError) as err:
        handler.redirect_request(request, None, 302, "Found", {}, "http://127.0.0.1:1/x.img")
    assert err.value.reason == "download-redirect" and "(https to http)" in err.value.message
    upgraded = handler.redirect_request(urllib.request.Request("http://127.0.0.1:1/x.img"),
                                        None, 302, "Found", {}, "https://127.0.0.1:1/x.img")
    assert upgraded.full_url == "https://127.0.0.1:1/x.img"


def test_redirect_to_another_host_is_followed_said_and_gets_no_password(
        server: tuple[str, Served], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base, served = server
    with serving("127.0.0.2") as (cdn, cdn_served):
        served.redirects["/img/disk.img"] = f"{cdn}/img/disk.img?sig=abc"
        with caplog.at_level("INFO", logger="aivm.fetch"):
            out = fetch(fetch_node(_with_secrets(base)), tmp_path / "e")
    assert (out / "disk.qcow2").read_bytes() == PAYLOAD
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{base}/img/disk.img?X-Amz-Signature=***&x=*** redirected (HTTP 302) to "
                        f"{cdn}/img/disk.img?sig=***"]
    assert served.auths[0].startswith("Basic ") and cdn_served.auths == [""]


def test_same_host_redirect_keeps_basic_auth(server: tuple[str, Served], tmp_path: Path) -> None:
    base, served = server
    served.redirects["/img/old.img"] = "/img/disk.img"
    out = fetch(fetch_node(_with_secrets(base, "old.img")), tmp_path / "e")
    assert (out / "disk.qcow2").read_bytes() == PAYLOAD
    assert len(served.auths) == 2 and served.auths[0] == served.auths[1] != ""


def _slow(monkeypatch: pytest.MonkeyPatch, **limits: float) -> None:
    from aivm.recipes import fetch as fetch_mod

    monkeypatch.setattr(fetch_mod, "LIMITS", fetch_mod.Limits(**limits))


def test_trickling_server_fails_on_the_minimum_rate(server: tuple[str, Served], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte every so often never trips the per-read timeout; the rate check stops it."""
    base, served = server
    served.piece, served.pause = 1, 0.05           # 20 bytes/s, each read well within `stall`
    _slow(monkeypatch, stall=5.0, min_rate=1000.0, window=0.5, deadline=60.0)
    started = time.monotonic()
    with pytest.raises(BuildError) as err:
        fetch(fetch_node(f"{base}/img/disk.img"), tmp_path / "e")
    assert time.monotonic() - started < 3.0
    assert err.value.reason == "download-too-slow"
    assert "below the minimum of 1000 bytes/s" in err.value.message
    assert "resumes" in err.value.hint


def test_overall_deadline(server: tuple[str, Served], tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    base, served = server
    served.piece, served.pause = 64 * 1024, 0.05   # ~1.3 MB/s: fast enough, but too long
    _slow(monkeypatch, stall=5.0, min_rate=1000.0, window=0.5, deadline=0.8)
    with pytest.raises(BuildError) as err:
        fetch(fetch_node(f"{base}/img/disk.img"), tmp_path / "e")
    assert err.value.reason == "download-too-slow"
    assert "longer than 1 s in all" in err.value.message


def test_an_invalid_url_is_refused_without_its_secrets() -> None:
    with pytest.raises(AivmError) as err:
        REGISTRY.recipe("fetch").preflight(fetch_node("https://al:pw9@a.example/x y?t=tok9"))
    assert err.value.reason == "invalid-param"
    assert "'https://al:***@a.example/x y?t=***'" in err.value.message
    assert "pw9" not in err.value.message and "tok9" not in err.value.message
