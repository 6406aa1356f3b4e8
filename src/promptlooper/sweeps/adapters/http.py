"""Shared HTTP plumbing for providers spoken to over JSON: one aiohttp session per provider,
and one mapping from HTTP failures to retryable or final ``AdapterError``s.

The session opens on the first call, in the loop that makes it (any asyncio loop, uvloop
included), with at most the provider's ``concurrency`` connections kept alive. What a call
may reach is fixed when it opens: no credentials written in ``base_url`` are sent, its host
is checked against ``outbound`` (a literal address is connected to without a lookup) and
every name is resolved through ``GuardedResolver``, and redirects are not followed, since
the URL they point to was never checked.

Proxies follow ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``NO_PROXY`` by aiohttp's own rules, looked
up once per session rather than with ``trust_env``, which looks them up again in a thread for
every call and also sends the credentials of the process's ``~/.netrc`` to any host a sweep
names.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from promptlooper import __version__
from promptlooper.sweeps.adapters.base import AdapterError, ProviderConfig
from promptlooper.sweeps.adapters.outbound import refused_host
from promptlooper.sweeps.adapters.resolver import GuardedResolver, RefusedAddress
from promptlooper.sweeps.adapters.tls import trusted_context

USER_AGENT = f"promptlooper/{__version__}"
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace").strip()
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or data)[:200]


class HttpJsonAdapter:
    """Base for adapters that POST JSON and read JSON back."""

    default_base_url = ""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.base_url = (config.base_url or self.default_base_url).rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._endpoint = ""
        self._proxy: URL | None = None
        self._proxy_headers: dict[str, str] | None = None

    def headers(self) -> dict[str, str]:
        return {}

    def _fail(self, problem: str) -> AdapterError:
        return AdapterError(f"{self.config.name}: {problem}")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._open()
        return self._session

    def _open(self) -> aiohttp.ClientSession:
        try:
            url = URL(self.base_url)
            if url.scheme not in ("http", "https") or not url.host:
                raise self._fail(f"not an http(s) URL: {self.base_url!r}")
            url = url.with_user(None)  # drops the password too
        except ValueError as exc:
            raise self._fail(f"invalid base_url: {exc}") from exc
        refused = refused_host(url.host)
        if refused is not None:
            raise self._fail(f"refusing to connect to {url.host}: {refused}")
        try:
            tls = trusted_context(self.config.ca_bundle) if url.scheme == "https" else True
        except ValueError as exc:
            raise self._fail(f"ca_bundle is {exc}") from exc
        try:
            proxy, auth = get_env_proxy_for_url(url)
        except LookupError:  # no proxy for this URL's scheme, or NO_PROXY names its host
            proxy, auth = None, None
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **self.headers()}
        if auth is not None:
            credentials = {"Proxy-Authorization": auth.encode()}
            if url.scheme == "https":  # on the CONNECT request only, never into the tunnel
                self._proxy_headers = credentials
            else:  # a plain-HTTP request is sent to the proxy itself
                headers.update(credentials)
        self._endpoint = str(url)
        self._proxy = proxy
        connector = aiohttp.TCPConnector(
            # Unset, the sweep's own concurrency bounds the calls in flight.
            limit=self.config.concurrency or 0,
            resolver=GuardedResolver(),
            ssl=tls,
        )
        return aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def request_json(self, method: str, path: str, body: Any = None) -> Any:
        client = self._client()
        try:
            async with client.request(
                method,
                self._endpoint + path,
                json=body,
                allow_redirects=False,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
            ) as response:
                status, raw = response.status, await response.read()
                retry_after = response.headers.get("Retry-After")
        except TimeoutError as exc:
            raise AdapterError(
                f"{self.config.name} timed out after {self.config.timeout:g} s", retryable=True
            ) from exc
        except aiohttp.ClientError as exc:
            raise self._transport_error(exc) from exc
        except ValueError as exc:  # a header value aiohttp will not send (a line break)
            raise self._fail(f"cannot send the request: {exc}") from exc
        if status >= 300:
            raise AdapterError(
                f"{self.config.name} answered HTTP {status}: {_error_message(raw)}",
                retryable=status in RETRYABLE_STATUSES,
                retry_after=parse_retry_after(retry_after),
                status=status,
            )
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise AdapterError(
                f"{self.config.name} sent a malformed response (not JSON): {raw[:120]!r}"
            ) from exc

    def _transport_error(self, exc: aiohttp.ClientError) -> AdapterError:
        """What went wrong below HTTP. Retryable, as a dropped connection is, unless trying
        again cannot help: an untrusted certificate, a refused address, a malformed URL."""
        where = f"{self.config.name} at {self._endpoint}"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return self._fail(
                f"the TLS certificate of {exc.host}:{exc.port} is not trusted "
                f"({exc.certificate_error}); give the provider a ca_bundle, or set SSL_CERT_FILE"
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            if isinstance(exc.os_error, RefusedAddress):
                return self._fail(f"refusing to connect: {exc.os_error}")
            reason = exc.os_error.strerror or exc.os_error
            return AdapterError(
                f"cannot reach {where}: cannot connect to {exc.host}:{exc.port}: {reason}",
                retryable=True,
            )
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            return AdapterError(
                f"cannot reach {where}: the proxy answered HTTP {exc.status} {exc.message}",
                retryable=exc.status in RETRYABLE_STATUSES,
            )
        if isinstance(exc, aiohttp.InvalidURL):
            return self._fail(f"invalid URL {exc}")
        return AdapterError(f"cannot reach {where}: {exc or type(exc).__name__}", retryable=True)

    async def list_models(self) -> list[str]:
        """Both OpenAI-style and Anthropic servers list models as ``{"data": [{"id"}]}``."""
        data = await self.request_json("GET", "/models")
        return sorted(item["id"] for item in data.get("data", []))

    async def test_connection(self) -> bool:
        try:
            await self.list_models()
        except AdapterError:
            return False
        return True

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
