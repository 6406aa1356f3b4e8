"""Adaptive search settings: what a sweep document may say, and the errors that name the field."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.errors import Invalid
from promptlooper.sweeps.plan import compile_plan
from promptlooper.sweeps.spec import parse_spec
from tests.sweeps.conftest import create, document, run_to_end
from tests.sweeps.test_search_optuna import tuning
from tests.sweeps.test_search_racing import racing


def _with(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return doc


RACING = _with(document(), "search", {"strategy": "racing", "budget": {"calls": 100}})

ONE_CONFIG = _with(RACING, "parameter_space", {"model": "mock:small", "prompt": "{{ input }}"})

BAD = [
    (_with(RACING, "search.budget", {"calls": 0}), "search.budget.calls: "),
    (_with(RACING, "search.budget", {"usd": -1}), "search.budget.usd: "),
    (_with(RACING, "search.budget", {}), "search.budget: give calls, usd or tokens"),
    (_with(RACING, "search.strategy", "bandit"), "search.strategy: "),
    (_with(RACING, "search.alpha", 1.5), "search.alpha: "),
    (_with(tuning(), "search.seed", -1), "search.seed: Input should be greater than or equal to 0"),
    (
        _with(tuning(), "search.seed", 99999999999999999999),
        "search.seed: Input should be less than or equal to 4294967295",
    ),
    (_with(RACING, "search.seed", 2**32), "search.seed: "),
    (_with(RACING, "search.budget", {"calls": 2**31}), "search.budget.calls: "),
    (_with(RACING, "search.budget", {"tokens": 10**30}), "search.budget.tokens: "),
    (
        _with(RACING, "parameter_space", {"model": "mock:small", "prompt": "{{ input }}"}),
        "search.strategy: racing compares configs; the space has one",
    ),
    (_with(RACING, "scorers", []), "scorers: a racing search compares configs"),
    (
        _with(tuning(), "parameter_space.temperature", {"low": 2.0, "high": 1.5}),
        "parameter_space: temperature: low (2) is above high (1.5)",
    ),
    (
        _with(tuning(), "parameter_space.max_tokens", {"low": 0, "high": 8, "log": True}),
        "parameter_space: max_tokens: a log range needs low above 0",
    ),
    (
        _with(tuning(), "search", {"strategy": "optuna"}),
        "search: optuna search needs n_trials or a budget",
    ),
    (
        _with(document(), "parameter_space.temperature", {"low": 0.0, "high": 1.0}),
        "parameter_space.temperature: a range needs search: {strategy: optuna}",
    ),
]


@pytest.mark.parametrize(
    ("doc", "message"), BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)]
)
def test_bad_search_settings_name_the_field(doc: dict[str, Any], message: str):
    with pytest.raises(Invalid) as caught:
        parse_spec(doc)

    assert caught.value.message.startswith(message), caught.value.message


def test_the_bounds_themselves_are_accepted():
    spec = parse_spec(
        _with(tuning(), "search", {"strategy": "optuna", "seed": 2**32 - 1, "n_trials": 2})
    )
    assert spec.search.seed == 2**32 - 1
    limits = {"calls": 2**31 - 1, "tokens": 2**31 - 1}
    assert parse_spec(_with(RACING, "search.budget", limits)).search.budget.calls == 2**31 - 1


async def test_the_largest_seed_runs_an_optuna_search(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    """What the spec accepts, Optuna's sampler takes: the seed fails nothing at run time."""
    experiment = await create(client, owner, project_id, tuning(2, seed=2**32 - 1))
    final = await run_to_end(client, app, owner, experiment["id"])

    assert final["status"] == "completed", final["error"]


@pytest.mark.parametrize("seed", [-1, 99999999999999999999])
async def test_the_api_refuses_a_seed_optuna_cannot_take_with_a_422_naming_it(
    client: httpx.AsyncClient, owner, project_id, seed: int
):
    response = await client.post(
        f"/api/projects/{project_id}/experiments",
        json=_with(tuning(2), "search.seed", seed),
        headers=owner.headers,
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "search", "seed"]


def test_ranges_keep_whole_numbers_whole():
    spec = parse_spec(tuning())

    assert spec.parameter_space["max_tokens"] == {"low": 64, "high": 512, "log": True}
    assert spec.parameter_space["temperature"] == {"low": 0.0, "high": 1.5, "log": False}


async def test_the_api_refuses_a_bad_budget_with_a_422_naming_it(
    client: httpx.AsyncClient, owner, project_id
):
    response = await client.post(
        f"/api/projects/{project_id}/experiments",
        json=_with(RACING, "search.budget", {"calls": 0}),
        headers=owner.headers,
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "search", "budget", "calls"]


def test_a_budget_in_dollars_over_unpriced_models_is_refused_naming_them():
    doc = racing({"good": 0.95, "close": 0.93, "free": 0.9}, budget={"usd": 0.5})
    doc["providers"]["mock"]["prices"] = {"good": {"input": 2.0, "output": 4.0}}

    with pytest.raises(Invalid) as caught:
        compile_plan(parse_spec(doc), allow_python=True)

    assert caught.value.message.startswith(
        "search.budget.usd: mock:close, mock:free have no price in providers.<name>.prices"
    )


def test_a_budget_in_dollars_over_priced_or_free_models_is_accepted():
    doc = racing({"good": 0.95, "free": 0.9}, budget={"usd": 0.5})
    doc["providers"]["mock"]["prices"] = {
        "good": {"input": 2.0, "output": 4.0},
        "free": {"input": 0, "output": 0},
    }

    assert len(compile_plan(parse_spec(doc), allow_python=True).configs) == 2
    assert compile_plan(parse_spec(racing({"a": 0.9, "b": 0.8}, budget={"calls": 9})))


async def test_the_api_refuses_a_budget_in_dollars_that_could_not_bind(
    client: httpx.AsyncClient, owner, project_id
):
    response = await client.post(
        f"/api/projects/{project_id}/experiments",
        json=racing({"good": 0.95, "close": 0.93}, budget={"usd": 0.5}),
        headers=owner.headers,
    )

    assert response.status_code == 422
    assert "search.budget.usd: mock:close, mock:good have no price" in response.text
