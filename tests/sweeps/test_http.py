"""The adapters' HTTP (one aiohttp session per provider) against scripted servers on
127.0.0.1: what a request carries, keep-alive and its limit, broken connections, timeouts,
encodings, redirects, TLS and CA bundles, proxies, refused addresses, and uvloop."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop

from promptlooper.sweeps.adapters import AdapterError, ProviderConfig
from promptlooper.sweeps.adapters.openai import OpenAIAdapter
from promptlooper.sweeps.engine.executor import Providers
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.certificates import self_signed
from tests.fakes.openai_server import FakeOpenAI, start
from tests.fakes.proxy import FakeProxy

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


async def start_scripted(handler: Handler, tls: ssl.SSLContext | None = None):
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


def adapter(url: str, **settings) -> OpenAIAdapter:
    return OpenAIAdapter(ProviderConfig(name="openai", type="openai", base_url=url, **settings))


async def call(url: str, path: str = "/", body=None, **settings):
    """One request through a fresh adapter, closed afterwards."""
    client = adapter(url, **settings)
    try:
        return await client.request_json("POST" if body is not None else "GET", path, body)
    finally:
        await client.aclose()


async def test_a_request_carries_the_path_prefix_headers_and_body_but_no_url_credentials():
    scripted, server, port = await start_scripted(reply())
    answer = await call(
        f"http://user:secret@127.0.0.1:{port}/v1/", "/chat/completions", {"a": 1}, api_key="k"
    )
    server.close()

    assert answer == {"ok": True}
    request = scripted.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    head = request.lower()
    assert f"host: 127.0.0.1:{port}\r\n".encode() in head
    assert b"authorization: bearer k\r\n" in head
    assert b"user-agent: promptlooper/" in head
    assert b"accept: application/json\r\n" in head
    assert b"content-type: application/json\r\n" in head
    assert request.endswith(b'\r\n\r\n{"a": 1}')
    assert b"secret" not in request  # credentials written in the URL are not sent anywhere
    assert b"basic" not in head


async def test_connections_are_kept_alive_and_bounded_by_the_providers_concurrency():
    async def slow(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.02)
        await reply()(request, writer)

    scripted, server, port = await start_scripted(slow)
    client = adapter(f"http://127.0.0.1:{port}", concurrency=3)
    answers = await asyncio.gather(*(client.request_json("GET", f"/{i}") for i in range(30)))
    await client.aclose()
    server.close()

    assert answers == [{"ok": True}] * 30
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

    for handler, expected in ((chunked, {"choices": [1, 2]}), (until_close, {"a": 1})):
        _, server, port = await start_scripted(handler)
        client = adapter(f"http://127.0.0.1:{port}")
        first = await client.request_json("GET", "/")
        second = await client.request_json("GET", "/")  # after a close, a fresh connection
        await client.aclose()
        server.close()
        assert first == second == expected


async def test_a_response_cut_short_is_a_retryable_error_and_the_next_call_works():
    calls = []

    async def flaky(request: bytes, writer: asyncio.StreamWriter) -> None:
        calls.append(1)
        if len(calls) == 1:
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial')
            await writer.drain()
            writer.close()
        else:
            await reply()(request, writer)

    _, server, port = await start_scripted(flaky)
    client = adapter(f"http://127.0.0.1:{port}")
    with pytest.raises(AdapterError, match="cannot reach openai") as info:
        await client.request_json("GET", "/")
    assert info.value.retryable
    assert await client.request_json("GET", "/") == {"ok": True}
    await client.aclose()
    server.close()


async def test_a_connection_the_server_closed_while_idle_is_not_reused():
    async def once(request: bytes, writer: asyncio.StreamWriter) -> None:
        await reply()(request, writer)
        writer.close()  # keep-alive announced, then the server hangs up

    scripted, server, port = await start_scripted(once)
    client = adapter(f"http://127.0.0.1:{port}")
    await client.request_json("GET", "/")
    await asyncio.sleep(0.05)
    assert await client.request_json("GET", "/") == {"ok": True}
    await client.aclose()
    server.close()
    assert scripted.connections == 2


async def test_malformed_responses_and_refused_connections_are_retryable_errors():
    async def garbage(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    _, server, port = await start_scripted(garbage)
    with pytest.raises(AdapterError, match="cannot reach openai") as malformed:
        await call(f"http://127.0.0.1:{port}")
    server.close()
    await server.wait_closed()

    with pytest.raises(AdapterError, match=f"cannot connect to 127.0.0.1:{port}") as refused:
        await call(f"http://127.0.0.1:{port}")
    assert malformed.value.retryable
    assert refused.value.retryable


async def test_the_timeout_covers_the_whole_request_and_drops_the_connection():
    async def stall(request: bytes, writer: asyncio.StreamWriter) -> None:
        if b"/slow" in request:
            await asyncio.sleep(1)
        await reply()(request, writer)

    scripted, server, port = await start_scripted(stall)
    client = adapter(f"http://127.0.0.1:{port}", timeout=0.1)
    with pytest.raises(AdapterError, match=r"timed out after 0\.1 s") as info:
        await client.request_json("GET", "/slow")
    assert info.value.retryable
    assert await client.request_json("GET", "/fast") == {"ok": True}
    await client.aclose()
    server.close()
    assert scripted.connections == 2  # the stalled connection was not handed out again


async def test_a_gzip_body_is_decoded_and_a_broken_one_is_an_error():
    for body, expected in ((gzip.compress(b'{"a": 1}'), {"a": 1}), (b"not gzip", None)):
        scripted, server, port = await start_scripted(
            reply(body, headers="Content-Encoding: gzip\r\n")
        )
        if expected is None:
            with pytest.raises(AdapterError, match="cannot reach openai"):
                await call(f"http://127.0.0.1:{port}")
        else:
            assert await call(f"http://127.0.0.1:{port}") == expected
        server.close()
        assert b"gzip" in scripted.requests[0].lower().split(b"accept-encoding:")[1]


async def test_an_error_status_decides_retrying_and_carries_retry_after():
    answers = {
        b"/busy": reply(b'{"error": "slow down"}', "429 Too Many Requests", "Retry-After: 2\r\n"),
        b"/bad": reply(b'{"error": {"message": "bad parameter"}}', "400 Bad Request"),
    }

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> None:
        await answers[request.split(b" ")[1]](request, writer)

    _, server, port = await start_scripted(handler)
    client = adapter(f"http://127.0.0.1:{port}")
    with pytest.raises(AdapterError, match="HTTP 429: slow down") as busy:
        await client.request_json("POST", "/busy", {})
    with pytest.raises(AdapterError, match="HTTP 400: bad parameter") as bad:
        await client.request_json("POST", "/bad", {})
    await client.aclose()
    server.close()

    assert (busy.value.retryable, busy.value.retry_after, busy.value.status) == (True, 2.0, 429)
    assert (bad.value.retryable, bad.value.retry_after, bad.value.status) == (False, None, 400)


async def test_redirects_are_not_followed():
    elsewhere, other, other_port = await start_scripted(reply())
    location = f"Location: http://127.0.0.1:{other_port}/v1/chat/completions\r\n"
    _, server, port = await start_scripted(reply(b"", "307 Temporary Redirect", location))

    with pytest.raises(AdapterError, match="HTTP 307") as info:
        await call(f"http://127.0.0.1:{port}/v1", "/chat/completions", {"a": 1})
    server.close()
    other.close()

    assert not info.value.retryable
    assert elsewhere.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com", "not an http"),
        ("http://", "not an http"),
        ("http://example.com:99999", "invalid base_url"),
    ],
)
async def test_bad_urls_are_final_errors(url, message):
    with pytest.raises(AdapterError, match=message) as info:
        await call(url)
    assert not info.value.retryable


async def test_a_key_that_would_inject_headers_is_not_sent():
    scripted, server, port = await start_scripted(reply())
    with pytest.raises(AdapterError, match="cannot send the request") as info:
        await call(f"http://127.0.0.1:{port}", api_key="sk-key\r\nX-Injected: 1")
    server.close()

    assert not info.value.retryable
    assert scripted.requests == []


async def test_https_is_verified_against_the_system_certificates_or_ssl_cert_file(
    tmp_path, monkeypatch
):
    certificate = self_signed()
    _, server, port = await start_scripted(reply(), tls=certificate.server_context())
    url = f"https://127.0.0.1:{port}"

    with pytest.raises(
        AdapterError, match=r"certificate of 127\.0\.0\.1:\d+ is not trusted"
    ) as info:
        await call(url)
    assert "ca_bundle" in info.value.message
    assert not info.value.retryable  # trying again cannot make it trusted

    trusted = tmp_path / "trusted.pem"
    trusted.write_text(certificate.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted))  # as OpenSSL reads it
    assert await call(url) == {"ok": True}
    server.close()


async def test_a_providers_ca_bundle_is_trusted_instead_of_the_system_certificates(
    tmp_path, monkeypatch
):
    certificate, stranger = self_signed(), self_signed()
    _, server, port = await start_scripted(reply(), tls=certificate.server_context())
    url = f"https://127.0.0.1:{port}"
    trusted = tmp_path / "trusted.pem"
    trusted.write_text(certificate.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted))

    assert await call(url, ca_bundle=certificate.pem) == {"ok": True}
    with pytest.raises(AdapterError, match="is not trusted"):
        await call(url, ca_bundle=stranger.pem)  # the system's store no longer counts
    with pytest.raises(AdapterError, match="ca_bundle is not a PEM certificate bundle"):
        await call(url, ca_bundle="-----BEGIN CERTIFICATE-----\nnope\n")
    server.close()


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["169.254.169.254"], "cloud metadata address"),
        (["93.184.215.14", "169.254.1.1"], "link-local address"),
        (["::ffff:169.254.169.254"], "cloud metadata address"),
        (["fe80::1"], "link-local address"),
    ],
)
async def test_a_host_name_that_resolves_to_a_refused_address_is_refused(
    monkeypatch, addresses, reason
):
    """DNS rebinding: the name passed the check at creation; its answer now is refused. The
    system resolver stands in for a DNS server that answers these addresses."""
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "rebound.test":
            return real(host, port, *args, **kwargs)
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(AdapterError, match=f"rebound.test resolves to .*{reason}") as info:
        await call("http://rebound.test:8080/v1", "/chat/completions", {}, timeout=5)
    assert not info.value.retryable


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/v1", "http://[fd00:ec2::254]/v1", "http://metadata.google.internal"],
)
async def test_a_refused_address_or_metadata_host_in_the_url_is_refused(url):
    with pytest.raises(AdapterError, match="refusing to connect") as info:
        await call(url, timeout=5)
    assert not info.value.retryable


@pytest.fixture
async def proxy(monkeypatch) -> AsyncIterator[tuple[FakeProxy, int]]:
    """A forward proxy on 127.0.0.1 and its port; no proxy settings inherited."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeProxy()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    yield fake, server.sockets[0].getsockname()[1]
    server.close()


async def test_calls_go_through_http_proxy_unless_no_proxy_names_the_host(proxy, monkeypatch):
    forward, proxy_port = proxy
    fake = FakeOpenAI()
    runner, url = await start(fake)
    monkeypatch.setenv("HTTP_PROXY", f"http://me:secret@127.0.0.1:{proxy_port}")

    proxied = await call(url, "/chat/completions", {"model": "m", "messages": [{"content": "a"}]})
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    direct = await call(url, "/chat/completions", {"model": "m", "messages": [{"content": "b"}]})
    await runner.cleanup()

    assert proxied["choices"][0]["message"]["content"] == "answer: a"
    assert direct["choices"][0]["message"]["content"] == "answer: b"
    assert forward.requests == [f"POST {url}/chat/completions"]
    assert forward.authorizations == ["Basic bWU6c2VjcmV0"]  # me:secret, for the proxy only
    assert fake.requests == 2


async def test_https_calls_tunnel_through_https_proxy_with_the_providers_ca_bundle(
    proxy, monkeypatch
):
    forward, proxy_port = proxy
    certificate = self_signed()
    scripted, server, port = await start_scripted(reply(), tls=certificate.server_context())
    monkeypatch.setenv("HTTPS_PROXY", f"http://me:secret@127.0.0.1:{proxy_port}")

    answer = await call(f"https://127.0.0.1:{port}/v1", "/models", ca_bundle=certificate.pem)
    server.close()

    assert answer == {"ok": True}
    assert forward.requests == [f"CONNECT 127.0.0.1:{port}"]  # the request itself is encrypted
    assert forward.authorizations == ["Basic bWU6c2VjcmV0"]
    assert scripted.requests[0].startswith(b"GET /v1/models HTTP/1.1")
    assert b"proxy-authorization" not in scripted.requests[0].lower()


def test_the_adapters_work_on_uvloop():
    """``promptlooper serve`` runs on uvloop, whose transports are not asyncio's own."""

    async def sweep_calls() -> tuple[str, ...]:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        openai, anthropic = FakeOpenAI(retry_after=0.01), FakeAnthropic()
        openai_runner, openai_url = await start(openai)
        anthropic_runner, anthropic_url = await start(anthropic)  # type: ignore[arg-type]
        providers = Providers(
            {
                "openai": ProviderConfig(name="openai", type="openai", base_url=openai_url),
                "anthropic": ProviderConfig(
                    name="anthropic", type="anthropic", base_url=anthropic_url
                ),
            }
        )
        try:
            answers = await asyncio.gather(
                providers.complete("openai:small", "reply: one", {}, None),
                providers.complete("openai:small", "reply: two [429]", {}, None),
                providers.complete("anthropic:claude-test", "reply: three", {}, None),
            )
        finally:
            await providers.aclose()
            await openai_runner.cleanup()
            await anthropic_runner.cleanup()
        assert providers.retries == 1
        return tuple(answer.text for answer in answers)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(sweep_calls()) == ("one", "two [429]", "three")
