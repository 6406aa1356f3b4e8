"""An OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

Real HTTP, scripted misbehaviour. A prompt containing a marker misbehaves:

- ``[429]``: answers 429 with ``Retry-After`` on the first attempt, then succeeds;
- ``[500]``: answers 500 on the first attempt, then succeeds;
- ``[always500]``: always 500;  ``[400]``: always 400 (not retryable);
- ``[slow]``: sleeps ``slow_s`` before answering (longer than a test's timeout);
- ``[malformed]``: answers 200 with a body that is not JSON;
- ``[nochoices]``: answers 200 with JSON that has no choices;
- ``[unstorable]``: answers ``UNSTORABLE_REPLY``, text PostgreSQL cannot store.

``rate_429`` makes that fraction of first attempts answer 429 (the benchmark's flaky mode). The
reply is ``answer: <first 5 words of the prompt>``, or the ``reply:`` text after a ``reply:``
marker in the prompt. Run standalone with ``python -m tests.fakes.openai_server --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

_REPLY = re.compile(r"reply:(.*)$", re.DOTALL)
UNSTORABLE_REPLY = "billing\x00 or \ud800bug"
"""A NUL and a lone surrogate: JSON carries both, escaped, and a model may well send them."""


@dataclass
class FakeOpenAI:
    latency_ms: float = 0.0
    slow_s: float = 5.0
    retry_after: float = 0.05
    rate_429: float = 0.0
    seed: int = 0
    requests: int = 0
    attempts: Counter[str] = field(default_factory=Counter)
    bodies: list[dict] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    record_bodies: bool = True

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_post("/v1/chat/completions", self.chat)
        application.router.add_get("/v1/models", self.models)
        return application

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "small"}, {"id": "large"}]})

    async def chat(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.json()
        if self.record_bodies:
            self.bodies.append(body)
            self.headers.append(dict(request.headers))
        prompt = body["messages"][-1]["content"]
        attempt = self.attempts[prompt]
        self.attempts[prompt] += 1
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        if "[slow]" in prompt:
            await asyncio.sleep(self.slow_s)
        if "[always500]" in prompt or ("[500]" in prompt and attempt == 0):
            return web.json_response({"error": {"message": "upstream exploded"}}, status=500)
        if "[400]" in prompt:
            return web.json_response({"error": {"message": "bad parameter"}}, status=400)
        flaky = self.rate_429 and attempt == 0 and self._rng.random() < self.rate_429
        if ("[429]" in prompt and attempt == 0) or flaky:
            return web.json_response(
                {"error": {"message": "rate limited"}},
                status=429,
                headers={"Retry-After": str(self.retry_after)},
            )
        if "[malformed]" in prompt:
            return web.Response(text="<html>gateway hiccup</html>", content_type="text/html")
        if "[nochoices]" in prompt:
            return web.json_response({"id": "x", "choices": []})
        match = _REPLY.search(prompt)
        text = match.group(1).strip() if match else "answer: " + " ".join(prompt.split()[:5])
        if "[unstorable]" in prompt:
            text = UNSTORABLE_REPLY
        words_in = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        return web.json_response(
            {
                "id": f"chatcmpl-{self.requests}",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": words_in,
                    "completion_tokens": len(text.split()),
                    "total_tokens": words_in + len(text.split()),
                },
            }
        )


async def start(server: FakeOpenAI, port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve on 127.0.0.1 (a free port by default); returns the runner and the base URL."""
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{bound}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=0.05)
    args = parser.parse_args()
    server = FakeOpenAI(
        latency_ms=args.latency_ms,
        rate_429=args.rate_429,
        retry_after=args.retry_after,
        record_bodies=False,
    )

    async def serve() -> None:
        runner, url = await start(server, args.port)
        print(json.dumps({"url": url}), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
