"""Guardrails and bandits through ``promptlooper serve``: the server's own upkeep stops an
expensive arm without anyone reading the results, and moves a bandit's traffic to the better
arm while units keep their arm."""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx

from tests.deployed import Deployed, wait_for
from tests.factories import COST_GUARD, online_experiment
from tests.online.test_guardrails import COST

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0"}
GUARDED = online_experiment("answer_style", "verbose", **COST_GUARD)
BANDIT = online_experiment(
    "answer_bandit",
    "better",
    type="bandit",
    primary_metric="conversion",
    bandit={"every_exposures": 150, "every_seconds": 3600, "floor": 0.05},
)


def _assigned(http: httpx.Client, key: str, unit: str) -> str | None:
    found = http.get(f"/api/experiments/{key}/assignment", params={"unit_id": unit})
    assert found.status_code == 200, found.text
    return found.json()["variant_key"]


def _send(http: httpx.Client, events: list[dict]) -> None:
    for start in range(0, len(events), 1000):
        sent = http.post(
            "/api/experiments/batch", json={"events": events[start : start + 1000]}, headers=BROWSER
        )
        assert sent.status_code == 202, sent.text
        assert sent.json()["rejected"] == 0, sent.text


def test_the_server_stops_an_expensive_arm_and_moves_a_bandit(serve: Callable[..., Deployed]):
    server = serve(ONLINE_UPKEEP_SECONDS="0.3")
    rng = random.Random(11)
    with server.client() as http:
        assert http.post("/api/admin/metrics", json=COST, headers=server.admin).status_code == 201
        created = http.post("/api/admin/experiments", json=GUARDED, headers=server.admin)
        assert created.status_code == 201, created.text
        units = {
            f"visitor-{i}": _assigned(http, "answer_style", f"visitor-{i}") for i in range(400)
        }
        verbose_unit = next(u for u, arm in units.items() if arm == "verbose")
        events = []
        for unit, arm in units.items():
            base = {"experiment_key": "answer_style", "variant_key": arm, "session_id": unit}
            events.append(base | {"event_name": "impression"})
            cost = 1.0 if arm == "control" else 1.8
            events += [
                base | {"event_name": "llm_call", "value": cost * rng.uniform(0.8, 1.2)}
                for _ in range(3)
            ]
        _send(http, events)

        wait_for(
            lambda: _assigned(http, "answer_style", verbose_unit) == "control",
            timeout=30,
            what="the guardrail to stop the verbose arm",
        )
        results = http.get(
            "/api/v1/experiments/results",
            params={"experiment_key": "answer_style"},
            headers=server.admin,
        ).json()[0]
        assert results["guardrails"]["stopped_arms"]["verbose"]["metric"] == "cost-per-call"
        # Served the control now, the unit still counts in its own arm (intent to treat): the
        # events naming what it was served are filed under its arm, so no arm gains a unit.
        base = {"experiment_key": "answer_style", "variant_key": "control"}
        base["session_id"] = verbose_unit
        _send(http, [base | {"event_name": "impression"}, base | {"event_name": "llm_call"}])
        after = http.get(
            "/api/v1/experiments/results",
            params={"experiment_key": "answer_style"},
            headers=server.admin,
        ).json()[0]
        assert after["health"]["units_per_arm"] == results["health"]["units_per_arm"]
        assert after["health"]["multiple_exposure_rate"] == 0.0
        resumed = http.post(
            "/api/admin/experiments/answer_style/arms/verbose/resume", headers=server.admin
        )
        assert resumed.status_code == 200, resumed.text
        assert _assigned(http, "answer_style", verbose_unit) == "verbose"

        assert http.post("/api/admin/experiments", json=BANDIT, headers=server.admin).is_success
        first: dict[str, str] = {}
        for round_ in range(4):
            events = []
            for index in range(200):
                unit = f"r{round_}-{index}"
                arm = _assigned(http, "answer_bandit", unit)
                first[unit] = arm
                base = {"experiment_key": "answer_bandit", "variant_key": arm, "session_id": unit}
                events.append(base | {"event_name": "impression"})
                if rng.random() < (0.25 if arm == "better" else 0.04):
                    events.append(base | {"event_name": "conversion"})
            _send(http, events)
            exposed = 200 * (round_ + 1)
            wait_for(
                lambda exposed=exposed: (
                    _history(http, server) and _history(http, server)[-1]["exposed"] >= exposed - 50
                ),
                timeout=30,
                what="the bandit's weights to be updated",
            )
        public = next(
            e for e in http.get("/api/experiments").json() if e["experiment_key"] == "answer_bandit"
        )
        assert public["weights"][1] > 0.7
        for unit in ("r0-1", "r0-2", "r0-3", "r1-4"):
            assert _assigned(http, "answer_bandit", unit) == first[unit]


def _history(http: httpx.Client, server: Deployed) -> list[dict]:
    found = http.get(
        "/api/v1/experiments/results",
        params={"experiment_key": "answer_bandit"},
        headers=server.admin,
    )
    return found.json()[0]["traffic"]["history"]
