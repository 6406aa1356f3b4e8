"""Where a sweep's providers get their keys and which hosts they may name, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlooper.errors import Invalid
from promptlooper.settings import Settings
from promptlooper.sweeps.providers import (
    Credential,
    HostPolicy,
    ProviderAccess,
    ProviderPolicy,
    provider_configs,
    url_host,
)
from promptlooper.sweeps.spec import parse_spec

POLICY = HostPolicy(["api.openai.com", "*.corp.example", "10.0.0.0/8", "::1/128"])


def spec(**providers: dict) -> object:
    return parse_spec(
        {
            "name": "s",
            "dataset": {"rows": [{"input": "x"}]},
            "parameter_space": {"model": ["openai:m"], "prompt": ["p"]},
            "providers": providers,
        }
    )


@pytest.mark.parametrize(
    "host", ["api.openai.com", "llm.corp.example", "a.b.corp.example", "10.1.2.3", "::1"]
)
def test_listed_hosts_are_allowed(host: str):
    assert POLICY.allows(host)


@pytest.mark.parametrize(
    "host",
    [
        "openai.com",
        "api.openai.com.evil.example",
        "corp.example",  # *.corp.example is its subdomains only
        "evilcorp.example",
        "11.0.0.1",
        "127.0.0.1",
        "::2",
        "localhost",
    ],
)
def test_other_hosts_are_not(host: str):
    assert not POLICY.allows(host)


def test_an_ipv4_mapped_address_is_its_ipv4_address():
    assert POLICY.allows("::ffff:10.0.0.1")
    assert not POLICY.allows("::ffff:127.0.0.1")
    assert HostPolicy(["*"]).allows("anything.example")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://API.OpenAI.com./v1", "api.openai.com"),
        ("http://0x7f.1:8001/v1", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://0251.0376.0251.0376/", "169.254.169.254"),
        ("http://user:pw@api.openai.com/v1", "api.openai.com"),
        ("http://[::1]:8001/v1", "::1"),
    ],
)
def test_url_host_reads_the_host_a_connection_would_reach(url: str, host: str):
    assert url_host(url, "x") == host


@pytest.mark.parametrize(
    "url",
    [
        "http://a\\@api.openai.com/",
        "http://api%2eopenai.com/",
        "http://[fe80::1%25eth0]/",
        "http://h:99999/",
    ],
)
def test_url_host_refuses_what_parsers_may_read_differently(url: str):
    with pytest.raises(Invalid, match=r"^x: "):
        url_host(url, "x")


def test_on_a_server_unset_and_unoffered_keys_read_alike():
    access = ProviderAccess(
        env={"OFFERED": "v", "API_KEY": "secret"}, key_envs=frozenset({"OFFERED", "OFFERED_UNSET"})
    )
    answers = set()
    for name in ("API_KEY", "OFFERED_UNSET", "NOWHERE"):
        with pytest.raises(Invalid) as caught:
            access.named_key(name, "where")
        answers.add(caught.value.message.replace(name, "NAME"))

    assert access.named_key("OFFERED", "where") == "v"
    assert len(answers) == 1
    assert access.default_key("API_KEY") is None
    assert access.default_key("OFFERED") == "v"


def test_on_a_workstation_any_variable_is_a_key_and_unset_ones_are_named():
    access = ProviderAccess(env={"MY_KEY": "mine"})

    assert access.named_key("MY_KEY", "where") == "mine"
    with pytest.raises(Invalid, match="where: the environment variable OTHER is not set"):
        access.named_key("OTHER", "where")


def test_a_server_policy_holds_only_offered_keys_and_the_admins_endpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-default")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("MY_TEAM_KEY", "sk-team")
    monkeypatch.setenv("API_KEY", "bootstrap")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, provider_key_envs="MY_TEAM_KEY"
    )

    policy = ProviderPolicy.server(settings)
    configs = provider_configs(spec(), policy.access(admin=False, credentials={}))

    assert set(policy.env) == {"MY_TEAM_KEY", "OPENAI_BASE_URL", "DATA_DIR"}
    assert configs["openai"].api_key is None  # OPENAI_API_KEY is no longer offered
    assert configs["openai"].base_url == "http://127.0.0.1:9/v1"  # the admin's, unchecked
    named = provider_configs(
        spec(openai={"api_key_env": "MY_TEAM_KEY"}), policy.access(admin=False, credentials={})
    )
    assert named["openai"].api_key == "sk-team"


def test_credentials_go_to_providers_of_their_type_and_none_is_named_without_a_database():
    credentials = {"team": Credential("anthropic", "sk-ant")}
    access = ProviderAccess(env={}, credentials=credentials)

    configs = provider_configs(spec(claude={"type": "anthropic", "credential": "team"}), access)
    unchecked = provider_configs(spec(openai={"credential": "anything"}), ProviderAccess(env={}))

    assert configs["claude"].api_key == "sk-ant"
    assert "sk-ant" not in repr(credentials["team"])
    assert unchecked["openai"].api_key is None
    with pytest.raises(
        Invalid, match=r"^providers\.openai\.credential: 'team' is a credential for"
    ):
        provider_configs(spec(openai={"credential": "team"}), access)


def test_any_host_opens_to_a_projects_own_keys_not_to_the_servers():
    access = ProviderAccess(
        env={"OPENAI_API_KEY": "sk-server", "TEAM_KEY": "sk-team"},
        key_envs=frozenset({"OPENAI_API_KEY", "TEAM_KEY"}),
        hosts=HostPolicy(["*", "llm.corp.example"]),
        credentials={"mine": Credential("openai", "sk-mine")},
    )
    anywhere = "https://llm.attacker.example/v1"

    implicit = provider_configs(spec(openai={"base_url": anywhere}), access)
    own = provider_configs(spec(openai={"base_url": anywhere, "credential": "mine"}), access)
    listed = provider_configs(
        spec(openai={"base_url": "https://llm.corp.example/v1", "api_key_env": "TEAM_KEY"}),
        access,
    )
    default_endpoint = provider_configs(spec(), access)

    assert implicit["openai"].api_key is None
    assert own["openai"].api_key == "sk-mine"
    assert listed["openai"].api_key == "sk-team"
    assert default_endpoint["openai"].api_key == "sk-server"
    answers = set()
    for name in ("TEAM_KEY", "API_KEY"):
        with pytest.raises(Invalid) as caught:
            provider_configs(spec(openai={"base_url": anywhere, "api_key_env": name}), access)
        answers.add(caught.value.message)
    assert answers == {
        "providers.openai.api_key_env: this server sends its keys only to the hosts "
        "PROVIDER_ALLOWED_HOSTS lists, and llm.attacker.example is not one; store your key as "
        "a credential of the project"
    }
