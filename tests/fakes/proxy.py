"""A forward HTTP proxy on 127.0.0.1, for tests: real HTTP, just enough of it.

A request in absolute form (``POST http://host:port/path HTTP/1.1``, as a client sends it to an
``HTTP_PROXY``) goes on to its server on a connection of its own, and the answer comes back
whole; ``CONNECT host:port`` (what an ``HTTPS_PROXY`` gets) opens a tunnel. Every request line
and ``Proxy-Authorization`` is kept, so a test can see what went through the proxy. Serve it
with ``tests.deployed.ThreadedStreams(proxy.handle)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_HOP_BY_HOP = ("connection:", "keep-alive:", "proxy-")


@dataclass
class FakeProxy:
    requests: list[str] = field(default_factory=list)  # "POST http://127.0.0.1:8001/v1/..."
    authorizations: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ")
            self.requests.append(f"{method} {target}")
            self.authorizations += [
                line.split(":", 1)[1].strip()
                for line in lines
                if line.lower().startswith("proxy-authorization:")
            ]
            if method == "CONNECT":
                await self._tunnel(target, reader, writer)
                return
            length = 0
            for line in lines:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length)
            url = urlsplit(target)
            kept = [line for line in lines if line and not line.lower().startswith(_HOP_BY_HOP)]
            path = url.path + (f"?{url.query}" if url.query else "")
            forwarded = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close"])
            upstream_reader, upstream = await asyncio.open_connection(url.hostname, url.port)
            upstream.write(forwarded.encode("latin-1") + b"\r\n\r\n" + body)
            answer = await upstream_reader.read()  # the whole answer: the server closes after it
            upstream.close()
            writer.write(answer)
            await writer.drain()

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        upstream_reader, upstream = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream), pipe(upstream_reader, writer))
