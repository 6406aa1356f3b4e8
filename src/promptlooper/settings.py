"""Process settings, read from the environment and ``.env``.

Settings are built by ``create_app()`` and the CLI and passed down; nothing reads the environment
at import time, so tests configure a fresh ``Settings`` instead of patching globals.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import ByteSize, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from promptlooper.errors import ConfigurationError

JWT_SECRET_FILE = "jwt_secret"

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class Settings(BaseSettings):
    """Every knob of a PromptLooper process; see the configuration table in the README."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

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
    cache_max_entries: int = Field(default=1_000_000, ge=0)
    """The most entries the response cache holds (0: no limit); the least recently used go."""
    cache_max_bytes: ByteSize = Field(default=ByteSize(1 << 30), ge=0)
    """The most response bytes the cache holds, as ``512MB`` or ``2GiB`` (0: no limit)."""
    sweep_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    """How long an experiment counts as running without a heartbeat from the process that
    runs it (renewed every third of it): after a crash it is resumable this long after."""

    @field_validator("jwt_secret", "api_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

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
        """The environment sweeps read provider settings from, with this process's DATA_DIR and
        model registry in it (they may come from ``.env`` rather than the environment), so the
        ``local`` provider finds the same models and checkpoints as the training API."""
        env = dict(os.environ)
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
        path = self.data_dir / JWT_SECRET_FILE
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race; use its secret
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(secret)
        return secret
