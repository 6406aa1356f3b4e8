"""Process settings, read from the environment and ``.env``.

Settings are built by ``create_app()`` and the CLI and passed down; nothing reads the environment
at import time, so tests configure a fresh ``Settings`` instead of patching globals.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import ByteSize, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from promptlooper.errors import ConfigurationError

ENV_FILE = ".env"
JWT_SECRET_FILE = "jwt_secret"
CREDENTIALS_KEY_FILE = "credentials_key"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")

_DEFAULT_PORTS = {"http": 80, "https": 443}

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class Settings(BaseSettings):
    """Every knob of a PromptLooper process; see the configuration table in the README."""

    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore")

    data_dir: Path = Field(default=Path(".promptlooper"))
    database_url: str = ""
    redis_url: str = ""
    jwt_secret: SecretStr | None = None
    jwt_expire_minutes: int = Field(default=12 * 60, ge=1)
    api_key: SecretStr | None = None
    login_rate_limit: str = "10/minute"
    api_key_cache_seconds: float = Field(default=2.0, ge=0)
    """How long a checked API key is trusted without a database lookup (0: never)."""
    allow_python_callables: bool = False
    """Let sweeps sent to the server import and run Python code (``python:`` providers and
    scorers). The CLI always may: it runs the user's own sweep on the user's machine."""
    log_level: str = "info"
    training_models_file: Path | None = None
    """A YAML model registry for the training API, replacing the one shipped in the package."""
    training_device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``."""
    provider_key_envs: Annotated[list[str], NoDecode] = Field(
        default=["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
    )
    """The environment variables a sweep sent to the server may name in ``api_key_env`` (and
    the default providers' keys are read from). The CLI on a workstation reads any."""
    provider_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default=["api.openai.com", "api.anthropic.com"]
    )
    """Hosts the ``base_url`` of a sweep owned by a non-admin may name: host names (``*.`` for
    any subdomain), addresses, CIDR ranges, or ``*`` for any."""
    credentials_key: SecretStr | None = None
    """Fernet keys sealing project credentials, comma-separated: the first seals, every one
    opens (to rotate, put a new key first)."""
    cache_max_entries: int = Field(default=1_000_000, ge=0)
    """The most entries the response cache holds (0: no limit); the least recently used go."""
    cache_max_bytes: ByteSize = Field(default=ByteSize(1 << 30), ge=0)
    """The most response bytes the cache holds, as ``512MB`` or ``2GiB`` (0: no limit)."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default=[])
    """Origins (``https://shop.example``) whose pages may call the public experiment routes
    from the browser, or ``*`` for any; no other route ever answers another origin."""
    max_body_bytes: ByteSize = Field(default=ByteSize(2 << 20), ge=0)
    """The largest request body a route takes unless its family has a limit of its own (0:
    no limit); larger bodies are 413 before they are read."""
    max_body_public_bytes: ByteSize = Field(default=ByteSize(512 << 10), ge=0)
    """The largest body of public event ingestion, which needs no credentials: a full batch
    of 1,000 events fits."""
    max_body_document_bytes: ByteSize = Field(default=ByteSize(8 << 20), ge=0)
    """The largest sweep document (its dataset inline) sent to create an experiment."""
    sweep_max_runs: int = Field(default=10_000_000, ge=1)
    """The most runs one experiment may have: its run rows are created when it first starts,
    and the database holds them, with their results, for as long as it is kept."""
    ray_address: str = ""
    """A Ray cluster (``host:port`` of its head node) that makes sweeps' calls; the process
    that starts a sweep still owns the database. Empty: sweeps run in that process, and
    nothing of Ray is imported."""
    ray_connect_seconds: float = Field(default=20.0, gt=0, le=600)
    """How long joining the Ray cluster may take before it is an error (Ray on its own keeps
    retrying an address where nothing answers for minutes)."""
    sweep_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    """How long an experiment counts as running without a heartbeat from the process that
    runs it (renewed every third of it): after a crash it is resumable this long after."""
    online_upkeep_seconds: float = Field(default=30.0, ge=0.05, le=3600)
    """How often the server checks live online experiments' guardrails (auto-stop) and
    bandits' schedules."""

    @field_validator("jwt_secret", "api_key", "credentials_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("provider_key_envs", "provider_allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("provider_key_envs")
    @classmethod
    def _no_settings_as_keys(cls, names: list[str]) -> list[str]:
        """A sweep's key is sent to a provider: none of this process's own settings may be."""
        own = {field.upper() for field in cls.model_fields}
        for name in names:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name.upper() in own or name.upper().startswith("PROMPTLOOPER_"):
                raise ValueError(f"{name} is a PromptLooper setting; sweeps may never use it")
        return names

    @field_validator("provider_allowed_hosts")
    @classmethod
    def _host_patterns(cls, entries: list[str]) -> list[str]:
        return [_host_pattern(entry) for entry in entries]

    @field_validator("ray_address")
    @classmethod
    def _ray_address(cls, address: str) -> str:
        return ray_address(address)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, entries: list[str]) -> list[str]:
        return [_origin(entry) for entry in entries]

    @field_validator("credentials_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        keys = [] if value is None else value.get_secret_value().split(",")
        for key in keys:
            if not _is_fernet_key(key.strip()):
                raise ValueError(_FERNET_KEY_FORM)
        return value

    @property
    def async_database_url(self) -> str:
        """The database URL with an async driver, whatever form the user gave it in."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'promptlooper.db').as_posix()}"
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in _ASYNC_DRIVERS:
            raise ConfigurationError(
                f"DATABASE_URL must start with sqlite:// or postgresql:// (got {scheme!r})"
            )
        return f"{_ASYNC_DRIVERS[scheme]}://{rest}"

    def provider_env(self) -> dict[str, str]:
        """The environment sweeps read provider settings and keys from: ``.env`` and the process
        environment, like every other setting, with this process's DATA_DIR and model registry in
        it, so the ``local`` provider finds the same models and checkpoints as the training API."""
        env = {k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None}
        env.update(os.environ)  # as for settings: the environment wins over the file
        env["DATA_DIR"] = str(self.data_dir)
        if self.training_models_file is not None:
            env["TRAINING_MODELS_FILE"] = str(self.training_models_file)
        return env

    def jwt_secret_value(self) -> str:
        """The signing secret: the setting, else one generated once and kept under DATA_DIR.

        Keeping it on disk means tokens survive restarts without a secret ever living in code.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return self._kept_secret(JWT_SECRET_FILE, lambda: secrets.token_urlsafe(48))

    def credentials_keys(self) -> list[str]:
        """The keys that seal project credentials: the setting, else one generated once and kept
        under DATA_DIR (so the CLI and a server sharing DATA_DIR open the same credentials)."""
        if self.credentials_key is not None:
            return [k.strip() for k in self.credentials_key.get_secret_value().split(",")]
        key = self._kept_secret(CREDENTIALS_KEY_FILE, _new_fernet_key)
        if not _is_fernet_key(key):
            raise ConfigurationError(f"{self.data_dir / CREDENTIALS_KEY_FILE}: {_FERNET_KEY_FORM}")
        return [key]

    def _kept_secret(self, name: str, generate: Callable[[], str]) -> str:
        """The secret in DATA_DIR/``name``, written (mode 600) by whoever needs it first."""
        path = self.data_dir / name
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = generate()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race; use its secret
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(secret)
        return secret


def _new_fernet_key() -> str:
    """What ``Fernet.generate_key()`` makes, without loading the library for it."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


_FERNET_KEY_FORM = (
    "a key must be 32 url-safe base64-encoded bytes, as "
    "cryptography.fernet.Fernet.generate_key() makes"
)


def _is_fernet_key(key: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(key.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def _host_pattern(entry: Any) -> str:
    """One entry of PROVIDER_ALLOWED_HOSTS, in the form the sweep policy compares with."""
    text = str(entry).strip().lower().rstrip(".")
    if text == "*":
        return text
    try:
        return str(ipaddress.ip_network(text.strip("[]"), strict=False))
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(text):
        raise ValueError(f"{entry!r} is not a host name, *.domain, an address, a CIDR range or *")
    return text


def ray_address(address: str) -> str:
    """``address`` checked before anything of Ray is imported: the ``host:port`` (or
    ``ray://host:port``) of a running cluster's head node. Anything else is a ``ValueError``
    saying so: Ray would try a bad port for minutes, and it reads ``local`` or ``auto`` (or
    no port) as "start a cluster of your own", whose processes would outlive the command."""
    text = address.strip()
    if not text:
        return text
    host, colon, port = text.removeprefix("ray://").rpartition(":")
    if not colon or not _is_host(host):
        raise ValueError(
            f"{text!r} is not the host:port of a Ray cluster's head node; PromptLooper joins "
            "a running cluster and starts none: start one with `ray start --head --port PORT` "
            "and give its address"
        )
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port with a port from 1 to 65535")
    return text


def _is_host(text: str) -> bool:
    """Whether ``text`` is a host name, an IPv4 address or a bracketed IPv6 address."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        try:
            return ipaddress.ip_address(text).version == 6
        except ValueError:
            return False
    return bool(re.fullmatch(rf"{_LABEL}(\.{_LABEL})*", text.lower().rstrip(".")))


def _origin(entry: str) -> str:
    """One entry of CORS_ORIGINS as a browser writes an ``Origin`` header, which is what the
    CORS check compares with: lower-case scheme and host, no default port, no path."""
    text = entry.strip().rstrip("/")
    if text == "*":
        return text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or port == -1
        or parts.username is not None
        or parts.path
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"{entry!r} is not an origin such as https://shop.example[:port], or *")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    shown_port = "" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host}{shown_port}"
