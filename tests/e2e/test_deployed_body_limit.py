"""Oversized bodies through ``promptlooper serve``: a public route with no credentials answers
413 before the body is read, whether its length is declared or it comes chunked, and the
server's memory does not grow with what the client sends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deployed import Deployed

HUGE = 256 << 20
CHUNK = b"x" * (64 << 10)


def _rss(pid: int) -> int:
    """The process's resident memory in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _push(url: str, head: bytes, body: Iterator[bytes]) -> bytes:
    """Send ``head`` then ``body`` until the server stops taking it, reading its answer
    meanwhile (a server that refuses early closes the connection while we still send)."""
    address = urlsplit(url)
    answer = bytearray()
    with socket.create_connection((address.hostname, address.port), timeout=60) as sock:

        def read() -> None:
            try:
                while chunk := sock.recv(1 << 16):
                    answer.extend(chunk)
            except OSError:
                pass

        reader = threading.Thread(target=read)
        reader.start()
        try:
            sock.sendall(head)
            for part in body:
                sock.sendall(part)
        except OSError:  # the server closed the connection: it will not read the rest
            pass
        reader.join(60)
    return bytes(answer)


def _declared(url: str) -> bytes:
    head = (
        "POST /api/experiments/event HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {HUGE}\r\n\r\n"
    )
    return _push(url, head.encode(), (CHUNK for _ in range(HUGE // len(CHUNK))))


def _chunked(url: str) -> bytes:
    head = (
        b"POST /api/experiments/event HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    frame = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)
    return _push(url, head, (frame for _ in range(HUGE // len(CHUNK))))


@pytest.mark.parametrize("send", [_declared, _chunked], ids=["content-length", "chunked"])
def test_a_huge_public_body_is_413_and_costs_no_memory(
    serve: Callable[..., Deployed], send: Callable[[str], bytes]
):
    server = serve()
    with server.client() as http:  # warm up: the first request loads what serving needs
        http.post("/api/experiments/event", json={"experiment_key": "x"})
    before = _rss(server.process.pid)

    answer = send(server.url)

    grown = _rss(server.process.pid) - before
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large", answer[:300]
    assert b"MAX_BODY_PUBLIC_BYTES" in rest
    assert grown < 32 << 20, f"the server grew by {grown >> 20} MiB for a {HUGE >> 20} MiB body"
    with server.client() as http:
        assert http.get("/api/health").status_code == 200
