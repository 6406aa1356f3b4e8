"""Where a sweep's providers get their endpoints and keys, and what a process lets them use.

On a workstation the CLI runs its user's own sweeps, with its user's own environment. A server
runs sweeps that other people send while holding secrets that are not theirs (its settings, its
database URL), and it calls the ``base_url`` they write. So there a sweep may use only what an
admin made available: the environment variables listed in ``PROVIDER_KEY_ENVS``, the
credentials stored in the experiment's project, and, unless the experiment's owner is an admin,
the hosts listed in ``PROVIDER_ALLOWED_HOSTS``. Link-local and cloud-metadata hosts are refused
everywhere. The default providers' base URLs (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``) are
the admin's, and are used as they are.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from promptlooper.errors import Invalid
from promptlooper.sweeps.adapters.base import ModelPrice, ProviderConfig
from promptlooper.sweeps.adapters.outbound import refused_host
from promptlooper.sweeps.adapters.registry import adapter_types

if TYPE_CHECKING:
    from promptlooper.settings import Settings
    from promptlooper.sweeps.credentials.box import SecretBox
    from promptlooper.sweeps.spec import ProviderSpec, SweepSpec

DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {
    "mock": {},
    "openai": {"base_url_env": "OPENAI_BASE_URL", "api_key_env": "OPENAI_API_KEY"},
    "anthropic": {"base_url_env": "ANTHROPIC_BASE_URL", "api_key_env": "ANTHROPIC_API_KEY"},
    "python": {},
    "local": {"options_env": {"data_dir": "DATA_DIR", "models_file": "TRAINING_MODELS_FILE"}},
}
"""Providers usable without a ``providers:`` entry, and where their settings come from."""

KEYED_TYPES = frozenset(name for name, d in DEFAULT_PROVIDERS.items() if "api_key_env" in d)
"""Provider types that send a key, and so may have stored credentials."""

_ADMIN_ENV = frozenset(
    {d["base_url_env"] for d in DEFAULT_PROVIDERS.values() if "base_url_env" in d}
    | {var for d in DEFAULT_PROVIDERS.values() for var in d.get("options_env", {}).values()}
)
"""Variables a server's sweeps read that no sweep can choose: the admin's endpoints and paths."""

_HOST = re.compile(r"[a-z0-9_.-]+|[0-9a-f:.]+")


@dataclass(frozen=True, slots=True)
class Credential:
    """A project's stored provider key, opened; only providers of its type may send it."""

    provider: str
    secret: str = field(repr=False)


class HostPolicy:
    """The hosts a ``base_url`` may name: host names, ``*.domain`` (its subdomains), addresses
    and CIDR ranges (matching URLs that name an address in them), or ``*`` for any. Entries
    come checked and normalised from ``Settings.provider_allowed_hosts``.

    ``*`` lets sweeps reach any host with keys of their own (a project's credentials); the
    server's keys go only to the hosts listed, so that opening every host does not hand them
    to whoever asks."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.any = False
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            if entry == "*":
                self.any = True
            elif entry.startswith("*."):
                self.suffixes.append(entry[1:])
            else:
                try:
                    self.networks.append(ipaddress.ip_network(entry))
                except ValueError:
                    self.names.add(entry)

    def allows(self, host: str) -> bool:
        """Whether ``host`` (as ``url_host`` gives it) may be called."""
        return self.any or self.lists(host)

    def lists(self, host: str) -> bool:
        """Whether an entry other than ``*`` names ``host``."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host in self.names or any(host.endswith(s) for s in self.suffixes)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


def url_host(url: str, where: str) -> str:
    """The host ``url`` connects to, lower-cased, as a resolver would read it: a numeric
    IPv4 form (``0x7f.1``, ``2130706433``) becomes its dotted address."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks it
    except ValueError as exc:
        raise Invalid(f"{where}: {exc}") from exc
    host = (parts.hostname or "").rstrip(".")
    if "\\" in parts.netloc or not _HOST.fullmatch(host):
        raise Invalid(
            f"{where}: the host must be a name (letters, digits, '-', '_', '.') or an address"
        )
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return host


@dataclass(frozen=True)
class ProviderAccess:
    """What one sweep's providers may use.

    ``key_envs`` lists the variables of ``env`` that ``api_key_env`` may name (None: any, as on
    a workstation); ``hosts`` the hosts a ``base_url`` may name (None: any but the always
    refused); ``credentials`` the project's stored credentials by name (None: not known
    here, as when a file is validated without a database; names are then not checked).
    """

    env: Mapping[str, str]
    key_envs: frozenset[str] | None = None
    hosts: HostPolicy | None = None
    credentials: Mapping[str, Credential] | None = None

    def default_key(self, var: str | None) -> str | None:
        """The key a provider sends when its entry names none."""
        if var is None or (self.key_envs is not None and var not in self.key_envs):
            return None
        return self.env.get(var) or None

    def sends_server_keys_to(self, host: str | None) -> bool:
        """Whether this process's keys may go to ``host`` (None: the admin's endpoint)."""
        return host is None or self.hosts is None or self.hosts.lists(host)

    def named_key(self, var: str, where: str, host: str | None = None) -> str | None:
        """The value of ``api_key_env: var`` for a call to ``host``. On a server, a variable
        that is not offered and one that is offered but unset read alike: a sweep learns
        nothing of what is set."""
        if not self.sends_server_keys_to(host):
            raise Invalid(
                f"{where}: this server sends its keys only to the hosts PROVIDER_ALLOWED_HOSTS "
                f"lists, and {host} is not one; store your key as a credential of the project"
            )
        if self.key_envs is None:
            if var not in self.env:
                raise Invalid(f"{where}: the environment variable {var} is not set")
            return self.env[var] or None
        value = self.env.get(var) if var in self.key_envs else None
        if not value:
            raise Invalid(
                f"{where}: {var} is not a key this server offers to sweeps (an admin lists them "
                "in PROVIDER_KEY_ENVS), or store the key as a credential of the project"
            )
        return value

    def stored_key(self, name: str, kind: str, where: str) -> str | None:
        """The secret of the project's credential ``name``, for a provider of type ``kind``."""
        if kind not in KEYED_TYPES:
            raise Invalid(f"{where}: {kind} providers send no key")
        if self.credentials is None:
            return None
        credential = self.credentials.get(name)
        if credential is None:
            raise Invalid(f"{where}: this project has no credential named {name!r}")
        if credential.provider != kind:
            raise Invalid(
                f"{where}: {name!r} is a credential for {credential.provider}, "
                f"not for this {kind} provider"
            )
        return credential.secret

    def check_base_url(self, url: str, where: str) -> str:
        """The host of ``url``, if a sweep may call it; ``Invalid`` otherwise."""
        host = url_host(url, where)
        reason = refused_host(host)
        if reason is not None:
            raise Invalid(f"{where}: {reason}; provider calls never go there")
        if self.hosts is not None and not self.hosts.allows(host):
            raise Invalid(
                f"{where}: {host} is not a host this server lets your sweeps reach "
                "(an admin lists them in PROVIDER_ALLOWED_HOSTS)"
            )
        return host


@dataclass(frozen=True)
class ProviderPolicy:
    """What this process lets sweeps use, before it knows whose sweep it is; ``access`` then
    gives one sweep its share. ``box`` opens the credentials stored in projects."""

    env: Mapping[str, str]
    box: SecretBox
    key_envs: frozenset[str] | None = None
    hosts: HostPolicy | None = None

    @classmethod
    def workstation(cls, settings: Settings) -> ProviderPolicy:
        """The CLI: the user's own environment, any host but the always refused."""
        from promptlooper.sweeps.credentials.box import SecretBox

        return cls(env=settings.provider_env(), box=SecretBox(settings.credentials_keys))

    @classmethod
    def server(cls, settings: Settings) -> ProviderPolicy:
        """A server: the offered keys and the admin's endpoints are all its sweeps can read."""
        from promptlooper.sweeps.credentials.box import SecretBox

        offered = frozenset(settings.provider_key_envs)
        env = {k: v for k, v in settings.provider_env().items() if k in offered | _ADMIN_ENV}
        return cls(
            env=env,
            box=SecretBox(settings.credentials_keys),
            key_envs=offered,
            hosts=HostPolicy(settings.provider_allowed_hosts),
        )

    def access(self, *, admin: bool, credentials: Mapping[str, Credential]) -> ProviderAccess:
        """A sweep's share: an admin's sweeps may reach any host but the always refused."""
        return ProviderAccess(
            env=self.env,
            key_envs=self.key_envs,
            hosts=None if admin else self.hosts,
            credentials=credentials,
        )


def _options_from_env(defaults: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Options a provider reads from the process environment unless the sweep sets them."""
    names: Mapping[str, str] = defaults.get("options_env", {})
    return {option: env[var] for option, var in names.items() if env.get(var)}


def _entry_key(
    entry: ProviderSpec, kind: str, access: ProviderAccess, where: str, host: str | None
) -> str | None:
    """The key a provider entry sends to ``host`` (None: the admin's endpoint)."""
    if entry.credential is not None:
        return access.stored_key(entry.credential, kind, f"{where}.credential")
    if entry.api_key_env is not None:
        return access.named_key(entry.api_key_env, f"{where}.api_key_env", host)
    if not access.sends_server_keys_to(host):
        return None
    return access.default_key(DEFAULT_PROVIDERS.get(kind, {}).get("api_key_env"))


def provider_configs(
    spec: SweepSpec, access: ProviderAccess | None = None, *, allow_python: bool = False
) -> dict[str, ProviderConfig]:
    """Every provider the sweep may name, resolved; ``Invalid`` names the field it refuses.
    Without ``access``: this process's environment, as on a workstation."""
    access = access or ProviderAccess(env=os.environ)
    env = access.env
    configs: dict[str, ProviderConfig] = {}
    for name, defaults in DEFAULT_PROVIDERS.items():
        if name == "python" and not allow_python:
            continue
        configs[name] = ProviderConfig(
            name=name,
            type=name,
            base_url=env.get(defaults.get("base_url_env", "")) or None,
            api_key=access.default_key(defaults.get("api_key_env")),
            options=_options_from_env(defaults, env),
        )
    for name, entry in spec.providers.items():
        where = f"providers.{name}"
        kind = entry.type or name
        if kind not in adapter_types():
            raise Invalid(
                f"{where}.type: unknown provider type {kind!r}; known: {', '.join(adapter_types())}"
            )
        if kind == "python" and not allow_python:
            raise Invalid(
                f"{where}: python callables are disabled here "
                "(set ALLOW_PYTHON_CALLABLES=true to allow them)"
            )
        defaults = DEFAULT_PROVIDERS.get(kind, {})
        host = None
        if entry.base_url is not None:
            host = access.check_base_url(entry.base_url, f"{where}.base_url")
        configs[name] = ProviderConfig(
            name=name,
            type=kind,
            base_url=entry.base_url or env.get(defaults.get("base_url_env", "")) or None,
            api_key=_entry_key(entry, kind, access, where, host),
            concurrency=entry.concurrency,
            rate_limit=entry.rate_limit,
            timeout=entry.timeout,
            max_retries=entry.max_retries,
            ca_bundle=entry.ca_bundle,
            prices={m: ModelPrice(p.input, p.output) for m, p in entry.prices.items()},
            options={**_options_from_env(defaults, env), **entry.options},
        )
    return configs
