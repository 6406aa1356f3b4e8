"""The adapters' HTTP pool against scripted servers on 127.0.0.1: framing, keep-alive, broken
connections, timeouts, encodings and TLS."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
from collections.abc import Awaitable, Callable

import pytest

from promptlooper.sweeps.adapters.transport import HttpPool, TransportError

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A server that reads each request whole and lets ``handler`` write anything back."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.active = 0
        self.most_active = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                self.active += 1
                self.most_active = max(self.most_active, self.active)
                try:
                    await self.handler(request, writer)
                finally:
                    self.active -= 1
                if writer.is_closing():
                    return
        finally:
            writer.close()


async def start(handler: Handler, tls: ssl.SSLContext | None = None):
    scripted = Scripted(handler)
    server = await asyncio.start_server(scripted.serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    return scripted, server, port


def reply(body: bytes = b'{"ok": true}', status: str = "200 OK", headers: str = "") -> Handler:
    async def handler(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body
        )
        await writer.drain()

    return handler


async def test_a_request_carries_the_path_prefix_host_headers_and_body():
    scripted, server, port = await start(reply())
    pool = HttpPool(f"http://user:secret@127.0.0.1:{port}/v1/", headers={"X-Api-Key": "k"})
    response = await pool.request("POST", "/chat/completions", b'{"a": 1}')
    await pool.aclose()
    server.close()

    assert (response.status, response.body) == (200, b'{"ok": true}')
    request = scripted.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n".encode() in request
    assert b"X-Api-Key: k\r\n" in request
    assert b"Content-Type: application/json\r\nContent-Length: 8\r\n" in request
    assert request.endswith(b'\r\n\r\n{"a": 1}')
    assert b"secret" not in request  # credentials in the URL are not sent anywhere


async def test_connections_are_kept_alive_and_bounded_by_the_limit():
    async def slow(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.02)
        await reply()(request, writer)

    scripted, server, port = await start(slow)
    pool = HttpPool(f"http://127.0.0.1:{port}", limit=3)
    responses = await asyncio.gather(*(pool.request("GET", f"/{i}") for i in range(30)))
    await pool.aclose()
    server.close()

    assert all(r.status == 200 for r in responses)
    assert len(scripted.requests) == 30
    assert scripted.connections == 3
    assert scripted.most_active == 3


async def test_chunked_and_close_delimited_bodies_are_read_whole():
    async def chunked(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b'{"choices":', b" [1, 2]}"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")

    async def until_close(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"a":')
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b" 1}")
        writer.close()

    for handler, expected in ((chunked, b'{"choices": [1, 2]}'), (until_close, b'{"a": 1}')):
        _, server, port = await start(handler)
        pool = HttpPool(f"http://127.0.0.1:{port}")
        first = await pool.request("GET", "/")
        second = await pool.request("GET", "/")  # after a close, a fresh connection
        await pool.aclose()
        server.close()
        assert first.body == second.body == expected


async def test_a_response_cut_short_is_an_error_and_the_pool_recovers():
    calls = []

    async def flaky(request: bytes, writer: asyncio.StreamWriter) -> None:
        calls.append(1)
        if len(calls) == 1:
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial')
            await writer.drain()
            writer.close()
        else:
            await reply()(request, writer)

    _, server, port = await start(flaky)
    pool = HttpPool(f"http://127.0.0.1:{port}")
    with pytest.raises(TransportError, match="closed the connection"):
        await pool.request("GET", "/")
    assert (await pool.request("GET", "/")).status == 200
    await pool.aclose()
    server.close()


async def test_a_connection_the_server_closed_while_idle_is_not_reused():
    async def once(request: bytes, writer: asyncio.StreamWriter) -> None:
        await reply()(request, writer)
        writer.close()  # keep-alive announced, then the server hangs up

    scripted, server, port = await start(once)
    pool = HttpPool(f"http://127.0.0.1:{port}")
    await pool.request("GET", "/")
    await asyncio.sleep(0.05)
    assert (await pool.request("GET", "/")).status == 200
    await pool.aclose()
    server.close()
    assert scripted.connections == 2


async def test_malformed_responses_and_refused_connections_raise_transport_errors():
    async def garbage(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    _, server, port = await start(garbage)
    pool = HttpPool(f"http://127.0.0.1:{port}")
    with pytest.raises(TransportError, match="malformed HTTP response"):
        await pool.request("GET", "/")
    await pool.aclose()
    server.close()
    await server.wait_closed()

    with pytest.raises(TransportError, match=f"cannot connect to 127.0.0.1:{port}"):
        await HttpPool(f"http://127.0.0.1:{port}").request("GET", "/")


async def test_the_timeout_covers_the_whole_request_and_drops_the_connection():
    async def stall(request: bytes, writer: asyncio.StreamWriter) -> None:
        if b"/slow" in request:
            await asyncio.sleep(1)
        await reply()(request, writer)

    scripted, server, port = await start(stall)
    pool = HttpPool(f"http://127.0.0.1:{port}", timeout=0.1)
    with pytest.raises(TimeoutError):
        await pool.request("GET", "/slow")
    assert (await pool.request("GET", "/fast")).status == 200
    await pool.aclose()
    server.close()
    assert scripted.connections == 2  # the stalled connection was not handed out again


async def test_a_compressed_body_is_decoded_and_an_unknown_encoding_refused():
    packed = gzip.compress(b'{"a": 1}')
    for encoding, body, expected in (
        ("gzip", packed, b'{"a": 1}'),
        ("br", b"???", None),
        ("gzip", b"not gzip", None),
    ):
        _, server, port = await start(reply(body, headers=f"Content-Encoding: {encoding}\r\n"))
        pool = HttpPool(f"http://127.0.0.1:{port}")
        if expected is None:
            with pytest.raises(TransportError, match=r"Content-Encoding|cannot decode"):
                await pool.request("GET", "/")
        else:
            assert (await pool.request("GET", "/")).body == expected
        await pool.aclose()
        server.close()


async def test_status_and_headers_of_an_error_reach_the_caller():
    handler = reply(b'{"error": "slow down"}', "429 Too Many Requests", "Retry-After: 2\r\n")
    _, server, port = await start(handler)
    pool = HttpPool(f"http://127.0.0.1:{port}")
    response = await pool.request("POST", "/x", b"{}")
    await pool.aclose()
    server.close()

    assert response.status == 429
    assert response.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("url", "headers", "message"),
    [
        ("ftp://example.com", {}, "not an http"),
        ("http://", {}, "not an http"),
        ("http://example.com", {"Authorization": "Bearer k\n"}, "line break"),
        ("http://example.com", {"X-Key": "clé✓"}, "Latin-1"),
    ],
)
def test_bad_urls_and_header_values_are_refused_up_front(url, headers, message):
    with pytest.raises(ValueError, match=message):
        HttpPool(url, headers=headers)


def _certificates(tmp_path):
    """A throwaway certificate authority and a certificate for 127.0.0.1 signed by it."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject, issuer, key, signer, *, ca, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("test ca", "test ca", ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = build("127.0.0.1", "test ca", key, ca_key, ca=False, san=san)

    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = tmp_path / "server.pem"
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, chain


async def test_https_verifies_the_server_against_the_trusted_certificates(tmp_path, monkeypatch):
    ca_file, chain = _certificates(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(chain)
    _, server, port = await start(reply(), tls=tls)

    untrusted = HttpPool(f"https://127.0.0.1:{port}")
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusted.request("GET", "/")

    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the system store, as OpenSSL reads it
    trusted = HttpPool(f"https://127.0.0.1:{port}")
    response = await trusted.request("GET", "/")
    await trusted.aclose()
    server.close()
    assert response.body == b'{"ok": true}'
