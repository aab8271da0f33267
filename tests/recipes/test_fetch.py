"""The fetch recipe against a real HTTP server on 127.0.0.1 (loopback only)."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
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


class Handler(http.server.BaseHTTPRequestHandler):
    served: Served

    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        data = self.served.files.get(self.path)
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
        self.wfile.write(body)

    def _status(self, code: int) -> None:
        self.served.statuses.append(code)
        self.send_response(code)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    served = Served({"/img/disk.img": PAYLOAD})
    handler = type("H", (Handler,), {"served": served})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def fetch_node(url: str, digest: str = DIGEST) -> Node:
    return Node("image.test", "fetch", params={"url": url}, fixed_output=digest)


def fetch(node: Node, into: Path, progress: object = None) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    recipe = REGISTRY.recipe("fetch")
    recipe.preflight(node)
    recipe.build(BuildContext(node, node.fixed_output or "", {}, {}, progress), into)
    return into


def test_download_success_with_progress(server: tuple[str, Served], tmp_path: Path) -> None:
    base, served = server
    seen: list[tuple[int, int | None]] = []
    out = fetch(fetch_node(f"{base}/img/disk.img"), tmp_path / "e",
                lambda done, total: seen.append((done, total)))
    assert (out / "disk.qcow2").read_bytes() == PAYLOAD
    assert sorted(p.name for p in out.iterdir()) == ["disk.qcow2"]
    assert sum(d for d, _ in seen) == len(PAYLOAD)
    assert {t for _, t in seen} == {len(PAYLOAD)}
    assert served.statuses == [200]


def test_resume_within_one_build(server: tuple[str, Served], tmp_path: Path) -> None:
    base, served = server
    served.cut = 1
    out = fetch(fetch_node(f"{base}/img/disk.img"), tmp_path / "e")
    assert (out / "disk.qcow2").read_bytes() == PAYLOAD
    assert served.ranges == ["", f"bytes={len(PAYLOAD) // 4}-"]
    assert served.statuses == [200, 206]


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
