"""A minimal HTTP/1.1 load generator: keep-alive connections, one request in flight on each.

On a 2-core machine the load generator competes with the server it measures; aiohttp's client
spends about as much CPU per request as the ingestion server does. This one writes prebuilt
requests and reads just enough of each response (status line, Content-Length, body), in the
spirit of wrk, so that more of the machine is left to the server.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends bytes and waits for the whole response."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"content-length:")
        if start < 0:
            raise ValueError("response without Content-Length")
        line_end = head.find(b"\r\n", start)
        length = int(head[start + 15 : line_end if line_end > 0 else None])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status, body = int(head[9:12]), bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        waiter, self.waiter = self.waiter, None
        waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def connect(host: str, port: int) -> Connection:
    _transport, protocol = await asyncio.get_running_loop().create_connection(
        Connection, host, port
    )
    return protocol


def post_json(path: str, payload: Any, user_agent: str) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {user_agent}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
