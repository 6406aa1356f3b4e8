"""The OpenAI-compatible adapter against a real HTTP server on 127.0.0.1, through the executor's
gate (retries, Retry-After, timeouts)."""

from __future__ import annotations

import time

import pytest

from promptlooper.sweeps.adapters import AdapterError, ProviderConfig
from promptlooper.sweeps.engine.executor import Providers


def providers(url: str, **overrides) -> Providers:
    config = ProviderConfig(
        name="openai", type="openai", base_url=url, api_key="sk-test", timeout=2.0, max_retries=3
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return Providers({"openai": config})


async def test_success_with_usage_system_prompt_and_params(fake_openai):
    server, url = fake_openai
    caller = providers(url)

    response = await caller.complete(
        "openai:small", "Say hello to the world please now", {"temperature": 0.2}, "Be brief"
    )
    await caller.aclose()

    assert response.text == "answer: Say hello to the world"
    assert (response.tokens_in, response.tokens_out) == (9, 6)
    assert response.model == "small"
    assert response.finish_reason == "stop"
    body = server.bodies[-1]
    assert body["model"] == "small"
    assert body["temperature"] == 0.2
    assert body["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Say hello to the world please now"},
    ]


async def test_429_is_retried_after_retry_after(fake_openai):
    server, url = fake_openai
    server.retry_after = 0.3
    caller = providers(url)

    started = time.perf_counter()
    response = await caller.complete("openai:small", "reply: ok [429]", {}, None)
    elapsed = time.perf_counter() - started
    await caller.aclose()

    assert response.text == "ok [429]"
    assert server.attempts["reply: ok [429]"] == 2
    assert caller.retries == 1
    assert elapsed >= 0.3


async def test_5xx_is_retried(fake_openai):
    server, url = fake_openai
    caller = providers(url)

    response = await caller.complete("openai:small", "reply: fine [500]", {}, None)
    await caller.aclose()

    assert response.text == "fine [500]"
    assert server.attempts["reply: fine [500]"] == 2


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_persistent_5xx_fails_after_the_retries(fake_openai, max_retries: int):
    server, url = fake_openai
    caller = providers(url, max_retries=max_retries)

    with pytest.raises(AdapterError, match="HTTP 500: upstream exploded"):
        await caller.complete("openai:small", "x [always500]", {}, None)
    await caller.aclose()
    assert server.attempts["x [always500]"] == max_retries + 1
    assert caller.retries == max_retries


async def test_4xx_is_not_retried(fake_openai):
    server, url = fake_openai
    caller = providers(url)

    with pytest.raises(AdapterError, match="HTTP 400: bad parameter") as info:
        await caller.complete("openai:small", "x [400]", {}, None)
    await caller.aclose()
    assert info.value.retryable is False
    assert server.attempts["x [400]"] == 1


async def test_timeouts_are_retried_then_fail(fake_openai):
    server, url = fake_openai
    caller = providers(url, timeout=0.2, max_retries=1)

    with pytest.raises(AdapterError, match=r"timed out after 0\.2 s"):
        await caller.complete("openai:small", "x [slow]", {}, None)
    await caller.aclose()
    assert server.attempts["x [slow]"] == 2


@pytest.mark.parametrize(
    ("marker", "message"),
    [("[malformed]", "malformed response"), ("[nochoices]", "no choices[0].message")],
)
async def test_malformed_bodies_fail_clearly(fake_openai, marker: str, message: str):
    _, url = fake_openai
    caller = providers(url)

    try:
        with pytest.raises(AdapterError) as info:
            await caller.complete("openai:small", f"x {marker}", {}, None)
    finally:
        await caller.aclose()
    assert message in info.value.message


async def test_list_models_and_connection(fake_openai):
    _, url = fake_openai
    from promptlooper.sweeps.adapters import create_adapter

    adapter = create_adapter(ProviderConfig(name="openai", type="openai", base_url=url))
    assert await adapter.list_models() == ["large", "small"]
    assert await adapter.test_connection() is True
    await adapter.aclose()
    dead = create_adapter(ProviderConfig(name="o", type="openai", base_url="http://127.0.0.1:1/v1"))
    assert await dead.test_connection() is False
    await dead.aclose()


async def test_rate_limit_spaces_requests(fake_openai):
    server, url = fake_openai
    caller = providers(url, rate_limit=600.0)  # 10 per second

    import asyncio

    started = time.perf_counter()
    await asyncio.gather(*(caller.complete("openai:small", f"p{i}", {}, None) for i in range(15)))
    elapsed = time.perf_counter() - started
    await caller.aclose()

    assert server.requests == 15
    assert elapsed >= 0.4  # a burst of 10, then 5 more at 10/s


async def test_provider_concurrency_cap(fake_openai):
    import asyncio

    server, url = fake_openai
    server.latency_ms = 50
    caller = providers(url, concurrency=2)

    started = time.perf_counter()
    await asyncio.gather(*(caller.complete("openai:small", f"p{i}", {}, None) for i in range(6)))
    elapsed = time.perf_counter() - started
    await caller.aclose()

    assert elapsed >= 0.14  # three waves of two


async def test_anthropic_adapter_speaks_the_messages_api():
    from aiohttp import web

    from tests.fakes.openai_server import start

    seen: dict = {}

    class Fake:
        def app(self):
            async def messages(request):
                seen["body"] = await request.json()
                seen["headers"] = dict(request.headers)
                return web.json_response(
                    {
                        "model": "claude-x",
                        "content": [{"type": "text", "text": "hi"}],
                        "stop_reason": "end_turn",
                        "usage": {"input_tokens": 3, "output_tokens": 1},
                    }
                )

            app = web.Application()
            app.router.add_post("/v1/messages", messages)
            return app

    runner, url = await start(Fake())  # type: ignore[arg-type]
    caller = Providers(
        {"anthropic": ProviderConfig(name="anthropic", type="anthropic", base_url=url, api_key="k")}
    )
    response = await caller.complete("anthropic:claude-x", "Hello", {"temperature": 0}, "sys")
    await caller.aclose()
    await runner.cleanup()

    assert (response.text, response.tokens_in, response.tokens_out) == ("hi", 3, 1)
    assert seen["body"]["system"] == "sys"
    assert seen["body"]["max_tokens"] == 1024
    assert seen["headers"]["x-api-key"] == "k"
