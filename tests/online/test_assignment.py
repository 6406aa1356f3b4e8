"""Assignment: known answers from the published algorithm, agreement with the GrowthBook SDK,
and the public assignment endpoint."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest
from growthbook import Experiment, GrowthBook
from growthbook.core import gbhash, getBucketRanges

from promptlooper.online.assignment import (
    assign,
    assigner,
    bucket_ranges,
    hash_unit,
    route_matches,
)

SPEC = json.loads((Path(__file__).parents[1] / "spec" / "assignment.json").read_text())


@pytest.mark.parametrize("case", SPEC["hash"], ids=lambda c: f"{c['seed']}+{c['unit_id']}")
def test_hash_known_answers(case):
    assert hash_unit(case["seed"], case["unit_id"]) == case["hash"]
    assert gbhash(case["seed"], case["unit_id"], 2) == case["hash"]


@pytest.mark.parametrize("case", SPEC["ranges"], ids=str)
def test_bucket_ranges_known_answers(case):
    expected = [bound for pair in case["ranges"] for bound in pair]
    ours = bucket_ranges(case["weights"], case["coverage"])
    assert [bound for pair in ours for bound in pair] == pytest.approx(expected)
    if case["weights"]:
        theirs = getBucketRanges(len(case["weights"]), case["coverage"], case["weights"])
        assert [bound for pair in theirs for bound in pair] == pytest.approx(expected)


@pytest.mark.parametrize("case", SPEC["assign"], ids=str)
def test_assignment_known_answers(case):
    got = assign(case["unit_id"], case["seed"], case["allocations"], case["coverage"])
    assert got == case["variant_index"]


@pytest.mark.parametrize("case", SPEC["routes"], ids=str)
def test_route_patterns(case):
    assert route_matches(case["path"], case["patterns"]) is case["eligible"]


def test_every_unit_lands_where_the_growthbook_sdk_puts_it():
    rng = random.Random(7)
    for _ in range(3000):
        count = rng.randint(2, 5)
        raw = [rng.randint(1, 10) for _ in range(count)]
        allocations = [100 * r / sum(raw) for r in raw]
        coverage = rng.choice([100, 75, 33.3, 5])
        unit = f"u{rng.getrandbits(40):x}"
        experiment = Experiment(
            key="exp",
            variations=list(range(count)),
            weights=[a / 100 for a in allocations],
            coverage=coverage / 100,
            hashVersion=2,
            seed="seed-1",
        )
        result = GrowthBook(attributes={"id": unit}).run(experiment)
        expected = result.variationId if result.inExperiment else None
        assert assign(unit, "seed-1", allocations, coverage) == expected, unit


def test_one_assigner_puts_many_units_where_the_growthbook_sdk_does():
    """A batch hashes the seed once and goes on from it with each unit: still GrowthBook's
    hash of seed and unit together, for units of any length and characters."""
    experiment = Experiment(
        key="exp", variations=[0, 1, 2], weights=[0.2, 0.3, 0.5], coverage=0.8, hashVersion=2,
        seed="séed-2",
    )  # fmt: skip
    pick = assigner("séed-2", [20, 30, 50], 80)
    rng = random.Random(11)
    for i in range(2000):
        unit = f"{i}-" + "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 40)))
        result = GrowthBook(attributes={"id": unit}).run(experiment)
        assert pick(unit) == (result.variationId if result.inExperiment else None), unit


def test_allocations_are_respected_over_many_units():
    counts = [0, 0, 0]
    for i in range(30_000):
        counts[assign(f"visitor-{i}", "split", [20, 30, 50])] += 1  # type: ignore[index]
    assert [round(c / 30_000, 2) for c in counts] == [0.2, 0.3, 0.5]


async def test_the_assignment_endpoint_agrees_with_the_module(client: httpx.AsyncClient, registry):
    for unit in ("session_abcd1234", "s-1", "s-2", "s-3"):
        response = await client.get(
            "/api/experiments/homepage_hero_test/assignment", params={"unit_id": unit}
        )
        assert response.status_code == 200
        index = assign(unit, "homepage_hero_test", [50, 50])
        expected = ["control", "tiny_gang_social_proof"][index]  # type: ignore[index]
        assert response.json() == {"experiment_key": "homepage_hero_test", "variant_key": expected}


async def test_units_outside_the_experiment_get_null(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    url = "/api/experiments/homepage_hero_test/assignment"
    off_route = await client.get(url, params={"unit_id": "s-1", "path": "/contact"})
    assert off_route.json()["variant_key"] is None
    on_route = await client.get(url, params={"unit_id": "s-1", "path": "/ab-demo"})
    assert on_route.json()["variant_key"] is not None

    definition = (await client.get("/api/admin/experiments/homepage_hero_test",
                                   headers=bootstrap_headers)).json()  # fmt: skip
    body = {k: definition[k] for k in ("name", "cookie_name", "eligible_routes", "variants")}
    await client.put(
        "/api/admin/experiments/homepage_hero_test",
        json=body | {"coverage": 0},
        headers=bootstrap_headers,
    )
    assert (await client.get(url, params={"unit_id": "s-1"})).json()["variant_key"] is None

    missing = await client.get("/api/experiments/nope/assignment", params={"unit_id": "s"})
    assert missing.status_code == 404
    no_unit = await client.get(url)
    assert no_unit.status_code == 422
