"""Settings: names from the environment, database URL forms, the generated JWT secret."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from promptlooper.errors import ConfigurationError
from promptlooper.settings import CREDENTIALS_KEY_FILE, JWT_SECRET_FILE, Settings


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


def test_provider_lists_read_as_comma_separated_names(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROVIDER_KEY_ENVS", "OPENAI_API_KEY, TEAM_KEY")
    monkeypatch.setenv("PROVIDER_ALLOWED_HOSTS", "api.openai.com,*.Corp.Example.,10.1.2.3/8,[::1]")

    settings = _settings()

    assert settings.provider_key_envs == ["OPENAI_API_KEY", "TEAM_KEY"]
    assert settings.provider_allowed_hosts == [
        "api.openai.com",
        "*.corp.example",
        "10.0.0.0/8",
        "::1/128",
    ]


def test_the_defaults_offer_the_providers_keys_and_hosts():
    settings = _settings()

    assert settings.provider_key_envs == ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
    assert settings.provider_allowed_hosts == ["api.openai.com", "api.anthropic.com"]


@pytest.mark.parametrize(
    "name",
    [
        "API_KEY",
        "JWT_SECRET",
        "DATABASE_URL",
        "REDIS_URL",
        "CREDENTIALS_KEY",
        "data_dir",
        "Provider_Key_Envs",
        "PROMPTLOOPER_API_KEY",
    ],
)
def test_a_promptlooper_setting_can_never_be_offered_to_sweeps(
    monkeypatch: pytest.MonkeyPatch, name: str
):
    monkeypatch.setenv("PROVIDER_KEY_ENVS", f"OPENAI_API_KEY,{name}")

    with pytest.raises(ValidationError, match=f"{name} is a PromptLooper setting"):
        _settings()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("PROVIDER_KEY_ENVS", "NOT-A-NAME"),
        ("PROVIDER_ALLOWED_HOSTS", "http://api.openai.com"),
        ("PROVIDER_ALLOWED_HOSTS", "10.0.0.0/33"),
        ("CREDENTIALS_KEY", "too-short"),
    ],
)
def test_malformed_provider_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, setting: str, value: str
):
    monkeypatch.setenv(setting, value)

    with pytest.raises(ValidationError, match=setting.lower()):
        _settings()


def test_the_credentials_key_is_generated_once_and_kept_private(tmp_path: Path):
    first = _settings(data_dir=tmp_path / "data").credentials_keys()
    second = _settings(data_dir=tmp_path / "data").credentials_keys()

    assert first == second
    assert len(first) == 1
    assert stat.S_IMODE((tmp_path / "data" / CREDENTIALS_KEY_FILE).stat().st_mode) == 0o600


def test_credentials_keys_from_the_setting_rotate_first_to_last(tmp_path: Path):
    new, old = (base64.urlsafe_b64encode(bytes([n]) * 32).decode() for n in (1, 2))

    settings = _settings(data_dir=tmp_path, credentials_key=f"{new}, {old}")

    assert settings.credentials_keys() == [new, old]
    assert not (tmp_path / CREDENTIALS_KEY_FILE).exists()


def test_cors_origins_are_read_as_browsers_write_them(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CORS_ORIGINS", "https://Shop.Example/, http://127.0.0.1:8080,https://a:443")
    assert _settings().cors_origins == [
        "https://shop.example",
        "http://127.0.0.1:8080",
        "https://a",
    ]
    assert _settings(cors_origins="*").cors_origins == ["*"]
    assert _settings(cors_origins="").cors_origins == []


@pytest.mark.parametrize(
    "origin",
    ["shop.example", "https://shop.example/path", "ftp://x", "https://u@x", "http://x:0x1"],
)
def test_cors_origins_refuse_what_is_not_an_origin(origin: str):
    with pytest.raises(ValidationError, match="is not an origin"):
        _settings(cors_origins=origin)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:6390", "head.example.com:6379", "ray://10.0.0.1:10001", "[::1]:6390", ""],
)
def test_a_head_node_s_address_is_accepted(address: str):
    assert Settings(_env_file=None, ray_address=address).ray_address == address  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "address", ["local", "auto", "127.0.0.1", "ray://", "ray://local", "http://h:6379", ":6379"]
)
def test_an_address_that_would_have_ray_start_its_own_cluster_is_refused(address: str):
    with pytest.raises(ValidationError, match="ray start --head"):
        Settings(_env_file=None, ray_address=address)  # type: ignore[call-arg]
