"""An Anthropic Messages API server on 127.0.0.1, for tests: real HTTP, canned answers.

The reply is ``answer: <first 5 words of the prompt>``, or the text after a ``reply:`` marker.
Every request's headers are kept, so a test can see which key reached the provider.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiohttp import web

_REPLY = re.compile(r"reply:(.*)$", re.DOTALL)


@dataclass
class FakeAnthropic:
    requests: int = 0
    bodies: list[dict] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_post("/v1/messages", self.messages)
        application.router.add_get("/v1/models", self.models)
        return application

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "claude-test"}]})

    async def messages(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.headers.append(dict(request.headers))
        body = await request.json()
        self.bodies.append(body)
        if "max_tokens" not in body:
            return web.json_response(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "max_tokens: Field required",
                    },
                },
                status=400,
            )
        prompt = body["messages"][-1]["content"]
        match = _REPLY.search(prompt)
        text = match.group(1).strip() if match else "answer: " + " ".join(prompt.split()[:5])
        return web.json_response(
            {
                "id": f"msg_{self.requests}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": len(prompt.split()), "output_tokens": len(text.split())},
            }
        )
