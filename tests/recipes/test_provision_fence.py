"""The builder's network fence (aivm/recipes/fence_proxy.py), for real but without a guest:
the proxy runs as QEMU's guestfwd would run it (the connection on stdin/stdout), inside a
network namespace of the test's own, against an HTTP server on that namespace's loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aivm.recipes import fence_proxy
from aivm.run import Cmd, run
from tests.e2e.netns import ns_exec, stop_pid, wait_until

PORT = 8765


@pytest.fixture
def server(netns: str, tmp_path: Path) -> Iterator[str]:
    """A static HTTP server on 127.0.0.1:PORT inside the namespace."""
    ns_exec(netns, "ip", "link", "set", "lo", "up", meaning="bring up the namespace's loopback")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello from the mirror\n")
    pid = start_http(netns, tmp_path / "www", tmp_path / "http.log")
    try:
        yield netns
    finally:
        stop_pid(pid, wait_s=5.0)


def start_http(netns: str, root: Path, log: Path) -> int:
    """python http.server serving `root` on the namespace's loopback; its pid once it listens."""
    script = (f'{sys.executable} -m http.server {PORT} --bind 127.0.0.1 --directory "$2" '
              f'</dev/null >"$1" 2>&1 & echo $!')
    pid = int(ns_exec(netns, "sh", "-c", script, "sh", str(log), str(root),
                      meaning="serve the test mirror").stdout.split()[0])
    wait_until(lambda: bool(ns_exec(netns, "ss", "-Hltn", f"sport = :{PORT}",
                                    check=False).stdout.strip()), 15.0, "the test mirror")
    return pid


def through_fence(netns: str, request: bytes, log: Path, *allow: str) -> str:
    argv = [sys.executable, "-I", str(fence_proxy.__file__), "--log", str(log)]
    for target in allow:
        argv += ["--allow", target]
    return run(Cmd.of("ip", "netns", "exec", netns, *argv, stdin=request),
               check=False, timeout=30).stdout


def get(url: str) -> bytes:
    return f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n".encode()


def test_loopback_is_refused_unless_declared(server: str, tmp_path: Path) -> None:
    log = tmp_path / "fence.log"
    refused = through_fence(server, get(f"http://127.0.0.1:{PORT}/hello.txt"), log)
    assert refused.startswith("HTTP/1.1 403") and "non-public" in refused
    allowed = through_fence(server, get(f"http://127.0.0.1:{PORT}/hello.txt"), log,
                            f"127.0.0.1:{PORT}")
    assert allowed.startswith("HTTP/1.0 200") and "hello from the mirror" in allowed
    assert [ln.split(" ", 1)[1].split(":")[0] for ln in log.read_text().splitlines()] == [
        "refused", "allowed"]


@pytest.mark.parametrize("request_bytes", [
    b"CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",   # metadata
    get("http://10.0.2.2:8765/"),                 # the host's loopback as slirp spells it
    get("http://192.168.1.1/"),                   # the LAN
    b"GET /relative HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",   # not a proxy request
])
def test_metadata_host_and_lan_are_refused(server: str, tmp_path: Path,
                                           request_bytes: bytes) -> None:
    answer = through_fence(server, request_bytes, tmp_path / "fence.log", f"127.0.0.1:{PORT}")
    assert answer.startswith("HTTP/1.1 403")


def test_public_addresses_pass_the_check_without_any_traffic() -> None:
    # a literal resolves without DNS; nothing connects here
    assert fence_proxy.resolve("93.184.216.34", 80, set())[0][0] == "93.184.216.34"
    with pytest.raises(fence_proxy.Refused):
        fence_proxy.resolve("100.64.0.1", 80, set())   # carrier-grade NAT is not public


def test_absolute_form_is_rewritten_with_connection_close() -> None:
    method, host, port, head = fence_proxy.parse(
        b"GET http://Deb.Debian.org:8080/debian/dists/x HTTP/1.1\r\nHost: deb.debian.org\r\n"
        b"Proxy-Connection: keep-alive\r\nConnection: keep-alive")
    assert (method, host, port) == ("GET", "deb.debian.org", 8080)
    assert head == (b"GET /debian/dists/x HTTP/1.1\r\nHost: deb.debian.org\r\n"
                    b"Connection: close\r\n\r\n")
