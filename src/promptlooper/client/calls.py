"""What the SDK asks the server, and how answers become results; no I/O here.

Each SDK method builds a ``Call`` (or a ``Resolve``); the sync and async clients only carry it
over HTTP. Keeping requests, parsing and the resolve cache in one place means the two clients
cannot drift apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import httpx

from promptlooper.client.errors import APIError, ValidationError, detail_text, error_for

if TYPE_CHECKING:
    from promptlooper.client.outbox import Outbox

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


def _json(response: httpx.Response) -> Any:
    return response.json() if response.content else None


@dataclass(frozen=True, slots=True)
class Call:
    method: Method
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    parse: Callable[[httpx.Response], Any] = _json
    skip: bool = False
    """Nothing to send (logging for a fallback config, say); the call returns None."""
    timeout: float | None = None
    """Seconds for this call, when the client's default is too short (a training step)."""
    content: bytes | None = None
    """A JSON body encoded already (calls queued one by one, sent as one batch)."""
    after: Outbox | None = None
    """Send only once the calls queued in this outbox have been sent: a run's calls go out in
    the order they were made."""
    check: Callable[[], None] | None = None
    """Run once ``after`` is sent and before sending; it raises what stops the call (a queued
    call the server refused)."""

    def result(self, response: httpx.Response) -> Any:
        raise_for_status(response)
        return self.parse(response)


def encode_json(value: Any, what: str) -> bytes:
    """``value`` as JSON, encoded here rather than by httpx so that NaN or infinity (a
    learning-rate schedule gone wrong, say), which JSON cannot carry, fails as the server
    would refuse it, a ``ValidationError`` naming ``what``, not a ``ValueError`` from inside
    httpx."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise ValidationError(None, f"{what}: not JSON: {exc}") from exc
    return text.encode()


def request_args(call: Call) -> dict[str, Any]:
    """``httpx`` request arguments for the call."""
    args: dict[str, Any] = {
        "method": call.method,
        "url": call.path,
        "params": call.params,
        "timeout": httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout,
    }
    content = call.content
    if content is None and call.json is not None:
        content = encode_json(call.json, f"{call.method} {call.path}")
    if content is not None:
        args["content"] = content
        args["headers"] = {"Content-Type": "application/json"}
    return args


def raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise error_for(response.status_code, detail_text(detail))


def text(response: httpx.Response) -> str:
    return response.text


@dataclass(frozen=True, slots=True)
class Resolved:
    """The config to run for an agent, and where it came from.

    ``source`` is ``variant`` or ``agent`` when the server answered, ``default`` when it could
    not be reached and the caller's default stands in (``fallback`` is then True). ``stale``
    marks a cached config served because a refresh failed.
    """

    config: dict[str, Any]
    source: Literal["variant", "agent", "default"]
    agent_id: str | None = None
    agent_slug: str | None = None
    variant_id: str | None = None
    variant_slug: str | None = None
    revision: str | None = None
    etag: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    fallback: bool = False
    stale: bool = False
    error: str | None = None
    unit_id: str | None = None
    """The unit resolved for (``resolve(unit_id=...)``): ``log`` files its calls under it."""
    experiment: dict[str, str] | None = None
    """The online experiment and arm that picked the config for the unit (``experiment_key``,
    ``variant_key``), None when none did."""

    def __getitem__(self, key: str) -> Any:
        return self.config[key]

    def __contains__(self, key: object) -> bool:
        """Whether the config has ``key``, as for a dict (without it, ``in`` would try
        integer indices through ``__getitem__``)."""
        return key in self.config

    def get(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    @classmethod
    def from_body(cls, body: Mapping[str, Any], unit_id: str | None = None) -> Resolved:
        return cls(
            config=dict(body["config"]),
            source=body["source"],
            agent_id=body["agent_id"],
            agent_slug=body.get("agent_slug"),
            variant_id=body.get("variant_id"),
            variant_slug=body.get("variant_slug"),
            revision=body.get("revision"),
            etag=body.get("etag"),
            provenance=dict(body.get("provenance") or {}),
            unit_id=unit_id,
            experiment=body.get("experiment"),
        )


@dataclass(frozen=True, slots=True)
class Resolve:
    """Resolve an agent's config: by id, or by slug within ``project_id``."""

    path: str
    params: Mapping[str, Any]
    default: Mapping[str, Any] | None

    @property
    def key(self) -> tuple[str, tuple[tuple[str, Any], ...]]:
        return self.path, tuple(sorted(self.params.items()))


@dataclass(slots=True)
class _Entry:
    resolved: Resolved
    checked_at: float


class ResolveCache:
    """Resolved configs by agent (and unit): served without a request for ``ttl`` seconds,
    then revalidated with ``If-None-Match`` so an unchanged config costs a 304 and no body."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[str, tuple[tuple[str, Any], ...]], _Entry] = {}

    def fresh(self, call: Resolve) -> Resolved | None:
        entry = self._entries.get(call.key)
        if entry is not None and self._clock() - entry.checked_at < self.ttl:
            return entry.resolved
        return None

    def headers(self, call: Resolve) -> dict[str, str]:
        entry = self._entries.get(call.key)
        if entry is None or entry.resolved.etag is None:
            return {}
        return {"If-None-Match": f'"{entry.resolved.etag}"'}

    def absorb(self, call: Resolve, response: httpx.Response) -> Resolved:
        """The config from the server's answer; a server error counts as unreachable."""
        entry = self._entries.get(call.key)
        if response.status_code == 304 and entry is not None:
            entry.checked_at = self._clock()
            return entry.resolved
        if response.status_code >= 500:
            return self.unreachable(call, f"server error {response.status_code}")
        raise_for_status(response)
        resolved = Resolved.from_body(response.json(), call.params.get("unit_id"))
        self._entries[call.key] = _Entry(resolved, self._clock())
        return resolved

    def unreachable(self, call: Resolve, error: str) -> Resolved:
        """Last known config (marked stale), else the caller's default (marked fallback)."""
        entry = self._entries.get(call.key)
        if entry is not None:
            return replace(entry.resolved, stale=True, error=error)
        if call.default is None:
            raise APIError(None, f"cannot resolve {call.path}: {error}; no default given")
        return Resolved(config=dict(call.default), source="default", fallback=True, error=error)
