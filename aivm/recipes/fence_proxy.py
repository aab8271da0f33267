"""The provision builder's network fence: one proxied HTTP(S) request per guest connection.

QEMU's user-mode network runs the builder with `restrict=on`, so the guest
reaches nothing (not the host's loopback through 10.0.2.2, not the LAN, not
169.254.169.254) except one `guestfwd` address. Each guest connection to it
starts this script with the connection on stdin/stdout; the guest's apt and
its `http_proxy`/`https_proxy` point there. It serves one request:
`CONNECT host:port` (https) or an absolute-form `GET http://host:port/...`,
sent upstream with `Connection: close`.

A target is refused unless every address its name resolves to is public
(`ipaddress.is_global`: no loopback, private, link-local, shared or reserved
range) or its `host:port` was declared (`--allow`, from the node's apt
sources and `allow` list). The connection goes to an address that was
checked, so DNS rebinding cannot slip through. Every decision is appended to
`--log`, which becomes part of the node's build log.

Standalone on purpose: stdlib only, run as `python -I fence_proxy.py`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import socket
import sys
import time
from typing import Any

HEAD_LIMIT = 64 * 1024
DROP_HEADERS = (b"proxy-connection", b"connection", b"keep-alive", b"proxy-authorization")


class Refused(Exception):
    pass


def read_head(fd: int) -> tuple[bytes, bytes]:
    """The request head (up to the blank line) and whatever followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = os.read(fd, 4096)
        if not chunk:
            raise Refused("the client closed the connection before a full request")
        data += chunk
        if len(data) > HEAD_LIMIT:
            raise Refused("request head too large")
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


def split_target(authority: str, default_port: int) -> tuple[str, int]:
    host, port = authority, default_port
    if authority.startswith("["):
        host, _, tail = authority[1:].partition("]")
        if tail.startswith(":"):
            port = int(tail[1:])
    elif authority.count(":") == 1:
        host, port_text = authority.split(":")
        port = int(port_text)
    return host.lower(), port


def parse(head: bytes) -> tuple[str, str, int, bytes]:
    """(method, host, port, head to send upstream); CONNECT sends nothing upstream."""
    lines = head.split(b"\r\n")
    try:
        method, target, version = lines[0].decode("latin-1").split(" ")
    except ValueError:
        raise Refused(f"not an HTTP request line: {lines[0][:80]!r}") from None
    if method == "CONNECT":
        host, port = split_target(target, 443)
        return method, host, port, b""
    if not target.startswith("http://"):
        raise Refused(f"only absolute http:// targets or CONNECT are proxied, not {target[:80]}")
    authority, _, path = target[len("http://"):].partition("/")
    host, port = split_target(authority, 80)
    kept = [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower() not in DROP_HEADERS]
    first = f"{method} /{path} {version}".encode("latin-1")
    return method, host, port, b"\r\n".join([first, *kept, b"Connection: close"]) + b"\r\n\r\n"


def resolve(host: str, port: int, declared: set[str]) -> list[tuple[Any, ...]]:
    """The sockaddrs to try, after the fence check."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"cannot resolve {host}: {exc}") from None
    if f"{host}:{port}" in declared:
        return [i[4] for i in infos]
    addrs = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
    bad = [str(a) for a in addrs if not a.is_global]
    if not addrs or bad:
        raise Refused(f"{host}:{port} resolves to a non-public address ({', '.join(bad)}); "
                      "declare it in the provision's apt_sources or allow")
    return [i[4] for i in infos]


def connect(addrs: list[tuple[Any, ...]], port: int) -> socket.socket:
    last: OSError | None = None
    for addr in addrs:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(30)
        try:
            sock.connect(addr)
            sock.settimeout(None)
            return sock
        except OSError as exc:
            last = exc
            sock.close()
    raise Refused(f"cannot connect to port {port}: {last}")


def pump(sock: socket.socket, pending: bytes) -> None:
    """Bytes both ways until the upstream closes."""
    if pending:
        sock.sendall(pending)
    client_open = True
    while True:
        watch: list[Any] = [sock, 0] if client_open else [sock]
        ready, _, _ = select.select(watch, [], [], 600)
        if not ready:
            return
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            _write_all(1, data)
        if client_open and 0 in ready:
            data = os.read(0, 65536)
            if data:
                sock.sendall(data)
            else:
                client_open = False
                sock.shutdown(socket.SHUT_WR)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def log(path: str, line: str) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def serve(declared: set[str], log_path: str) -> int:
    try:
        head, rest = read_head(0)
        method, host, port, upstream = parse(head)
        sock = connect(resolve(host, port, declared), port)
    except (Refused, ValueError) as exc:
        log(log_path, f"refused: {exc}")
        _write_all(1, b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain"
                      b"\r\n\r\naivm build fence: " + str(exc).encode() + b"\n")
        return 1
    log(log_path, f"allowed: {method} {host}:{port}")
    if method == "CONNECT":
        _write_all(1, b"HTTP/1.1 200 Connection established\r\n\r\n")
        pump(sock, rest)
    else:
        pump(sock, upstream + rest)
    sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allow", action="append", default=[], help="host:port reachable even "
                    "when not public")
    ap.add_argument("--log", default="", help="append each decision to this file")
    args = ap.parse_args(argv)
    try:
        return serve({a.lower() for a in args.allow}, args.log)
    except Exception as exc:  # stderr is the guest's socket: never let a traceback reach it
        log(args.log, f"error: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
