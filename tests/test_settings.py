"""Settings: names from the environment, database URL forms, the generated JWT secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from promptlooper.errors import ConfigurationError
from promptlooper.settings import JWT_SECRET_FILE, Settings


def _settings(**kwargs) -> Settings:
    return Settings(_env_file=None, **kwargs)  # type: ignore[call-arg]


def test_reads_the_documented_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("REDIS_URL", "redis://h:6379/0")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JWT_SECRET", "s3cret")
    monkeypatch.setenv("API_KEY", "bootstrap")

    settings = _settings()

    assert settings.async_database_url == "postgresql+asyncpg://u@h/db"
    assert settings.redis_url == "redis://h:6379/0"
    assert settings.data_dir == tmp_path
    assert settings.jwt_secret_value() == "s3cret"
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "bootstrap"


def test_reads_a_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("API_KEY", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("API_KEY=from-dotenv\nREDIS_URL=redis://x\n")

    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]

    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "from-dotenv"


def test_default_database_is_sqlite_under_data_dir(tmp_path: Path):
    settings = _settings(data_dir=tmp_path)
    assert settings.async_database_url == f"sqlite+aiosqlite:///{tmp_path}/promptlooper.db"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
    ],
)
def test_database_urls_get_async_drivers(given: str, expected: str):
    assert _settings(database_url=given).async_database_url == expected


def test_unsupported_database_url_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="DATABASE_URL must start with"):
        _ = _settings(database_url="mysql://u@h/d").async_database_url


def test_empty_secrets_mean_unset():
    settings = _settings(api_key="", jwt_secret="")
    assert settings.api_key is None
    assert settings.jwt_secret is None


def test_jwt_secret_is_generated_once_and_kept_private(tmp_path: Path):
    first = _settings(data_dir=tmp_path / "data").jwt_secret_value()
    second = _settings(data_dir=tmp_path / "data").jwt_secret_value()
    other_dir = _settings(data_dir=tmp_path / "elsewhere").jwt_secret_value()

    assert first == second
    assert len(first) >= 48
    assert other_dir != first
    mode = (tmp_path / "data" / JWT_SECRET_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
