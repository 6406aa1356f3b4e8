"""Sweeps started through ``promptlooper serve`` reach real HTTP providers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.deployed import Deployed, ThreadedApp, ThreadedStreams, finished_experiment
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.certificates import self_signed
from tests.fakes.openai_server import UNSTORABLE_REPLY, FakeOpenAI
from tests.fakes.proxy import FakeProxy

ROWS = [
    {"input": "My card was charged twice", "expected": "billing"},
    {"input": "The app crashes on start", "expected": "bug"},
]


def sweep(providers: dict[str, Any], models: list[str]) -> dict[str, Any]:
    return {
        "name": "deployed",
        "parameter_space": {
            "model": models,
            "prompt": ["Classify: {{ input }} reply:billing"],
        },
        "dataset": {"rows": ROWS},
        "scorers": [{"name": "accuracy", "type": "exact_match"}],
        "providers": providers,
        "concurrency": 4,
    }


def run_sweep(server: Deployed, document: dict[str, Any]) -> tuple[dict[str, Any], list[dict]]:
    """Create and start the sweep, wait for it; the experiment and its failed runs."""
    with server.client() as http:
        project = http.post("/api/projects", json={"name": "e2e"}, headers=server.admin)
        created = http.post(
            f"/api/projects/{project.json()['id']}/experiments", json=document, headers=server.admin
        )
        assert created.status_code == 201, created.text
        experiment_id = created.json()["id"]
        started = http.post(f"/api/experiments/{experiment_id}/start", headers=server.admin)
        assert started.status_code == 202, started.text
        finished = finished_experiment(http, experiment_id, server.admin)
        failed = http.get(
            f"/api/experiments/{experiment_id}/runs",
            params={"status": "failed"},
            headers=server.admin,
        )
    return finished, failed.json()["data"]


def test_the_server_runs_on_uvloop(serve: Callable[..., Deployed]):
    server = serve()

    assert "uvloop" in server.loaded_libraries()


def test_a_sweep_through_the_server_reaches_openai_and_anthropic(
    serve: Callable[..., Deployed],
    fake_openai: tuple[FakeOpenAI, str],
    fake_anthropic: tuple[FakeAnthropic, str],
):
    openai, openai_url = fake_openai
    anthropic, anthropic_url = fake_anthropic
    server = serve(OPENAI_API_KEY="sk-openai-e2e", ANTHROPIC_API_KEY="sk-ant-e2e")
    document = sweep(
        {"openai": {"base_url": openai_url}, "anthropic": {"base_url": anthropic_url}},
        ["openai:small", "anthropic:claude-test"],
    )

    finished, failed = run_sweep(server, document)
    with server.client() as http:
        board = http.get(f"/api/experiments/{finished['id']}/leaderboard", headers=server.admin)

    assert (finished["status"], finished["error"], failed) == ("completed", None, [])
    assert (openai.requests, anthropic.requests) == (2, 2)
    assert {h["Authorization"] for h in openai.headers} == {"Bearer sk-openai-e2e"}
    assert {h["x-api-key"] for h in anthropic.headers} == {"sk-ant-e2e"}
    assert sorted(e["score"] for e in board.json()["data"]) == [0.5, 0.5]


def test_provider_calls_go_through_the_servers_http_proxy_except_for_no_proxy_hosts(
    serve: Callable[..., Deployed], fake_openai: tuple[FakeOpenAI, str]
):
    openai, url = fake_openai
    proxy = FakeProxy()
    with ThreadedStreams(proxy.handle) as proxied:
        server = serve(HTTP_PROXY=proxied.origin, NO_PROXY="localhost")
        finished, failed = run_sweep(
            server,
            sweep(
                {
                    "openai": {"base_url": url},
                    "direct": {"type": "openai", "base_url": url.replace("127.0.0.1", "localhost")},
                },
                ["openai:small", "direct:small"],
            ),
        )

    assert (finished["status"], finished["progress"]["completed"], failed) == ("completed", 4, [])
    assert openai.requests == 4
    assert proxy.requests == [f"POST {url}/chat/completions"] * 2  # never the localhost ones


def test_a_tls_provider_is_trusted_through_its_ca_bundle_only(serve: Callable[..., Deployed]):
    certificate = self_signed()
    openai = FakeOpenAI()
    with ThreadedApp(openai.app(), tls=certificate.server_context()) as provider:
        url = f"{provider.origin}/v1"
        server = serve()
        bad_bundle = sweep(
            {"private": {"type": "openai", "base_url": url, "ca_bundle": "nope"}}, ["private:small"]
        )
        with server.client() as http:
            project = http.post("/api/projects", json={"name": "tls"}, headers=server.admin)
            refused = http.post(
                f"/api/projects/{project.json()['id']}/experiments",
                json=bad_bundle,
                headers=server.admin,
            )
        finished, failed = run_sweep(
            server,
            sweep(
                {
                    "private": {"type": "openai", "base_url": url, "ca_bundle": certificate.pem},
                    "stranger": {"type": "openai", "base_url": url, "max_retries": 0},
                },
                ["private:small", "stranger:small"],
            ),
        )

    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "providers", "private", "ca_bundle"]
    assert "not a PEM certificate bundle" in refused.json()["detail"][0]["msg"]
    assert (finished["status"], finished["progress"]["completed"]) == ("completed", 2)
    assert openai.requests == 2  # the provider without the bundle never got past the handshake
    assert len(failed) == 2
    for run in failed:
        assert "stranger: the TLS certificate of 127.0.0.1" in run["error"]
        assert "is not trusted" in run["error"]
        assert "self-signed certificate" in run["error"]


def test_a_model_answering_text_the_database_cannot_store_completes_the_sweep(
    serve: Callable[..., Deployed], fake_openai: tuple[FakeOpenAI, str]
):
    _, openai_url = fake_openai
    server = serve(OPENAI_API_KEY="sk-openai-e2e")
    document = sweep({"openai": {"base_url": openai_url}}, ["openai:small"])
    document["parameter_space"]["prompt"] = ["Classify: {{ input }} [unstorable]"]

    finished, failed = run_sweep(server, document)
    with server.client() as http:
        runs = http.get(f"/api/experiments/{finished['id']}/runs", headers=server.admin).json()
        one = http.get(
            f"/api/experiments/{finished['id']}/runs/{runs['data'][0]['id']}",
            headers=server.admin,
        ).json()

    assert (finished["status"], finished["error"], failed) == ("completed", None, [])
    assert [run["sanitized"] for run in runs["data"]] == [True, True]
    assert one["stages"][0]["response_raw"] == UNSTORABLE_REPLY.replace("\x00", "\ufffd").replace(
        "\ud800", "\ufffd"
    )
