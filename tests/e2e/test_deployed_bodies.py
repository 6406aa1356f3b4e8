"""Request bodies holding what a database cannot store alike are a 422 naming the field, on
every route and both databases, and nothing of them is stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.deployed import Deployed


def nested(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


DEEP = nested(900)
ONE_HUNDRED_DEEP = nested(100)
"""Within what routes that parse with pydantic's own JSON parser read (it stops at 200 levels,
a 422 for the whole body), and past what a field may hold."""
SURROGATE = '"half of \\ud83d"'
"""A string holding a lone surrogate, as JSON escapes it."""
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"}


def sweep(**raw: str) -> str:
    """A valid sweep document, with the named top-level parts replaced by raw JSON text."""
    parts = {
        "name": '"bodies"',
        "parameter_space": '{"model": ["mock:small"], "prompt": ["Hi {{ input }}"]}',
        "dataset": '{"rows": [{"input": "hello"}]}',
        **raw,
    }
    return "{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in parts.items()) + "}"


def post(http: Any, url: str, content: str, headers: dict[str, str]) -> Any:
    return http.post(url, content=content, headers={**headers, "Content-Type": "application/json"})


def test_unstorable_values_are_422_naming_the_field_on_every_route(
    serve: Callable[..., Deployed],
):
    server = serve()
    admin = server.admin
    with server.client() as http:
        project = http.post("/api/projects", json={"name": "bodies"}, headers=admin).json()
        experiments = f"/api/projects/{project['id']}/experiments"
        agents = f"/api/projects/{project['id']}/agents"
        cases = [
            (
                experiments,
                sweep(dataset='{"rows": [{"input": ' + DEEP + "}]}"),
                ["body", "dataset", "rows", 0, "input", "a"],
            ),
            (
                experiments,
                sweep(
                    parameter_space='{"model": ["mock:small"], "prompt": ["Hi"], "x": ['
                    + DEEP
                    + "]}"
                ),
                ["body", "parameter_space", "x", 0, "a"],
            ),
            (
                experiments,
                sweep(parameter_space='{"model": ["mock:small"], "prompt": ["Hi"], "t": [1e999]}'),
                ["body", "parameter_space", "t", 0],
            ),
            (
                experiments,
                sweep(parameter_space='{"model": ["mock:small"], "prompt": [' + SURROGATE + "]}"),
                ["body", "parameter_space", "prompt", 0],
            ),
            (
                agents,
                '{"name": "a", "model_provider": "openai", "model_name": "m", '
                f'"system_prompt": {SURROGATE}}}',
                ["body", "system_prompt"],
            ),
            (
                "/api/admin/experiments",
                '{"experiment_key": "k", "name": ' + SURROGATE + ', "cookie_name": "c", '
                '"variants": [{"variant_key": "a", "allocation": 50, "is_control": true}, '
                '{"variant_key": "b", "allocation": 50}]}',
                ["body", "name"],
            ),
            (
                "/api/experiments/event",
                '{"experiment_key": "k", "variant_key": "a", "session_id": "s", '
                '"event_name": "impression", "metadata": {"m": ' + ONE_HUNDRED_DEEP + "}}",
                ["body", "metadata", "m", "a"],
            ),
            (
                "/api/training/runs",
                '{"base_model": "tiny", "name": ' + SURROGATE + "}",
                ["body", "name"],
            ),
        ]
        answers = [post(http, url, content, {**admin, **BROWSER}) for url, content, _ in cases]
        listed = [
            http.get(experiments, headers=admin),
            http.get(agents, headers=admin),
            http.get("/api/admin/experiments", headers=admin),
        ]

    for (url, _, loc), answer in zip(cases, answers, strict=True):
        assert answer.status_code == 422, (url, answer.status_code, answer.text[:300])
        problems = answer.json()["detail"]
        assert len(problems) == 1, (url, problems)
        assert problems[0]["loc"][: len(loc)] == loc, (url, problems)
    messages = [answer.json()["detail"][0]["msg"] for answer in answers]
    assert messages[0] == "Lists and objects should nest at most 64 levels deep"
    assert messages[2] == "Input should be a finite number"
    assert messages[3].startswith("Text must not contain a lone surrogate")
    assert [response.status_code for response in listed] == [200, 200, 200]
    assert [response.json()["count"] for response in listed] == [0, 0, 0]
