"""The Python SDK against the real app: resolve with its cache and fallbacks, log, metrics."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from promptlooper.client import (
    APIConnectionError,
    APIError,
    AsyncClient,
    Client,
    NotFoundError,
    ValidationError,
)
from tests.client.conftest import Switch
from tests.factories import Actor

DEFAULT = {"model_provider": "openai", "model_name": "fallback-model"}


@pytest.fixture
async def sdk(switch: Switch, owner: Actor) -> AsyncIterator[AsyncClient]:
    key = owner.headers["X-Api-Key"]
    async with AsyncClient("http://testserver", api_key=key, transport=switch) as setup:
        project = await setup.projects.create("sdk")
    async with AsyncClient(
        "http://testserver", api_key=key, transport=switch, project_id=project["id"], ttl=60
    ) as client:
        yield client


async def _agent_with_active_variant(sdk: AsyncClient) -> tuple[dict, dict]:
    agent = await sdk.agents.create(
        "Extractor", model_provider="openai", model_name="gpt-4o-mini", temperature=0.2
    )
    variant = await sdk.variants.clone(agent["id"], "Hot", temperature=0.9)
    await sdk.variants.activate(agent["id"], variant["id"], reason="try hot")
    return agent, variant


async def test_resolve_log_and_metrics_through_the_sdk(sdk: AsyncClient):
    agent, variant = await _agent_with_active_variant(sdk)

    served = await sdk.variants.resolve("extractor")

    assert served.source == "variant"
    assert served.variant_id == variant["id"]
    assert served["temperature"] == 0.9
    assert served.provenance["model_name"] == "agent"
    assert not served.fallback
    assert not served.stale

    for quality in (0.5, 0.7, 0.9):
        recorded = await sdk.variants.log(
            served, latency_ms=100, tokens_in=10, tokens_out=5, quality=quality
        )
        assert recorded == {"recorded": 1}
    metrics = await sdk.agents.metrics(agent["id"])
    (row,) = metrics["data"]
    assert row["variant_id"] == variant["id"]
    assert row["n"] == 3
    assert row["quality_mean"] == pytest.approx(0.7)


async def test_a_slug_is_sent_as_one_path_segment_whatever_it_holds(sdk: AsyncClient):
    await _agent_with_active_variant(sdk)

    for slug in ("../../users", "extractor/../x"):  # no route takes a slash in a slug
        with pytest.raises(NotFoundError):
            await sdk.variants.resolve(slug)
    with pytest.raises(NotFoundError) as refused:  # the agent route, not a query string
        await sdk.variants.resolve("a?b#c")
    assert "agent" in str(refused.value).lower()


async def test_resolve_is_served_from_cache_within_the_ttl_then_revalidated(
    sdk: AsyncClient, switch: Switch
):
    agent, _ = await _agent_with_active_variant(sdk)
    first = await sdk.variants.resolve(agent["id"])
    requests = len(switch.statuses)

    again = await sdk.variants.resolve(agent["id"])
    assert again is first
    assert len(switch.statuses) == requests  # no request inside the TTL

    sdk.resolve_cache.ttl = 0
    revalidated = await sdk.variants.resolve(agent["id"])
    assert switch.statuses[-1] == 304
    assert revalidated is first

    await sdk.agents.deactivate(agent["id"])
    changed = await sdk.variants.resolve(agent["id"])
    assert switch.statuses[-1] == 200
    assert changed.source == "agent"
    assert changed["temperature"] == 0.2
    assert "temperature" in changed
    assert "variant_id" not in changed  # a field of the answer, not of the config
    assert changed.revision != first.revision


async def test_an_unreachable_server_gives_the_default_marked_and_log_sends_nothing(
    sdk: AsyncClient, switch: Switch
):
    switch.down = True

    served = await sdk.variants.resolve("extractor", default=DEFAULT)

    assert served.fallback
    assert served.source == "default"
    assert served["model_name"] == "fallback-model"
    assert "connection refused" in served.error
    assert await sdk.variants.log(served, latency_ms=5) is None
    assert switch.statuses == [201]  # only the project creation reached the server

    with pytest.raises(APIError, match="no default given") as raised:
        await sdk.variants.resolve("extractor")
    assert raised.value.status_code is None


async def test_after_a_success_an_outage_serves_the_last_config_marked_stale(
    sdk: AsyncClient, switch: Switch
):
    _, variant = await _agent_with_active_variant(sdk)
    sdk.resolve_cache.ttl = 0
    await sdk.variants.resolve("extractor", default=DEFAULT)

    switch.fail_with = 503
    stale = await sdk.variants.resolve("extractor", default=DEFAULT)

    assert stale.stale
    assert not stale.fallback
    assert stale.variant_id == variant["id"]
    assert stale.error == "server error 503"


async def test_client_errors_are_raised_not_papered_over(sdk: AsyncClient):
    with pytest.raises(APIError) as missing:
        await sdk.variants.resolve("no-such-agent", default=DEFAULT)
    assert missing.value.status_code == 404
    assert "no-such-agent" in missing.value.detail

    with pytest.raises(APIError) as invalid:
        await sdk.agents.create("Bad", model_provider="openai", model_name="m", temperature=5)
    assert invalid.value.status_code == 422
    assert "temperature" in invalid.value.detail

    with pytest.raises(ValueError, match="project_id"):
        AsyncClient("http://testserver").agents.list()


async def test_the_blocking_client_against_a_live_server(live_url: str, owner: Actor):
    def scenario() -> tuple:
        with Client(live_url, api_key=owner.headers["X-Api-Key"]) as client:
            project = client.projects.create("live")
            agent = client.agents.create(
                "Writer", project_id=project["id"], model_provider="mock", model_name="m"
            )
            served = client.variants.resolve("writer", project_id=project["id"])
            logged = client.variants.log(served, latency_ms=12.5, success=False, error="x")
            return agent, served, logged

    agent, served, logged = await asyncio.to_thread(scenario)

    assert served.source == "agent"
    assert served.agent_id == agent["id"]
    assert logged == {"recorded": 1}


def test_the_blocking_client_falls_back_when_nothing_listens():
    with Client("http://127.0.0.1:9", timeout=2) as client:
        served = client.variants.resolve(str(uuid.uuid4()), default=DEFAULT)

    assert served.fallback
    assert served.config == DEFAULT


def test_auth_headers_come_from_arguments_or_the_environment(monkeypatch):
    monkeypatch.setenv("PROMPTLOOPER_API_KEY", "pl_from_env")
    monkeypatch.setenv("PROMPTLOOPER_URL", "http://example.test:9000/")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [], "count": 0})

    with Client(transport=httpx.MockTransport(handler)) as client:
        client.projects.list()
    with Client(token="jwt-token", transport=httpx.MockTransport(handler)) as client:
        client.projects.list()

    assert str(seen[0].url) == "http://example.test:9000/api/projects"
    assert seen[0].headers["X-Api-Key"] == "pl_from_env"
    assert seen[1].headers["Authorization"] == "Bearer jwt-token"
    assert "X-Api-Key" not in seen[1].headers


async def test_project_credentials_through_the_sdk(sdk: AsyncClient, switch: Switch):
    created = await sdk.credentials.set("team-openai", provider="openai", secret="sk-sdk-secret")
    rotated = await sdk.credentials.set("team-openai", provider="openai", secret="sk-sdk-new")
    listed = await sdk.credentials.list()
    one = await sdk.credentials.get("team-openai")
    with pytest.raises(ValidationError) as refused:
        await sdk.credentials.set("x", provider="mock", secret="sk")
    with pytest.raises(NotFoundError):
        await sdk.credentials.get("a/../../x")  # quoted: one name, not a path
    deleted = await sdk.credentials.delete("team-openai")

    assert created["name"] == "team-openai"
    assert rotated["created_at"] == created["created_at"]
    assert listed == {"data": [one], "count": 1}
    assert "provider" in str(refused.value.detail)
    assert deleted is None
    assert await sdk.credentials.list() == {"data": [], "count": 0}
    assert "sk-sdk" not in str([created, rotated, listed, one])
    assert switch.statuses[-8:] == [201, 200, 200, 200, 422, 404, 204, 200]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_server_that_is_down_is_an_sdk_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with Client(url, api_key="pl_x") as client, pytest.raises(APIConnectionError) as raised:
        client.projects.list()
    assert raised.value.status_code is None
    assert f"cannot reach {url}/api/projects" in str(raised.value)
    assert isinstance(raised.value, APIError)


async def test_the_async_client_reports_a_server_that_is_down_the_same_way() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    async with AsyncClient(url, api_key="pl_x") as client:
        with pytest.raises(APIConnectionError, match=f"cannot reach {url}/api/projects"):
            await client.projects.list()


async def test_compare_through_the_sdk(sdk: AsyncClient, app):
    from tests.sweeps.conftest import triage

    async def finished(model: str) -> str:
        experiment = await sdk.experiments.create(triage(model))
        await sdk.experiments.start(experiment["id"])
        await asyncio.wait_for(app.state.sweep_jobs.wait(uuid.UUID(experiment["id"])), 30)
        return experiment["id"]

    baseline, candidate = await finished("mock:large"), await finished("mock:small")

    regression = await sdk.experiments.compare(baseline, candidate, margin=0.05, limit=3)
    with pytest.raises(ValidationError) as single:
        await sdk.experiments.compare(baseline)

    assert regression["gate"]["failed"] is True
    assert regression["paired"]["rows"] == 60
    assert len(regression["rows"]) == 3
    assert regression["rows"][0]["change"] == -1.0
    assert "b: the experiment has one scored config" in str(single.value.detail)
