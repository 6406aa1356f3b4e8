"""Two ``promptlooper serve`` processes on one database, both running the upkeep, while an
admin resumes an arm through one of them: each stop is made once, the resume and a stop made
at the same moment both hold, and an arm a person resumed is not stopped again."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import httpx

from tests.deployed import Deployed, wait_for
from tests.e2e.test_deployed_guardrails_bandits import _assigned, _send
from tests.factories import COST_GUARD, online_experiment
from tests.online.test_guardrails import COST

KEY = "answer_style"
ARMS = [
    {"variant_key": "control", "allocation": 34, "is_control": True},
    {"variant_key": "overruled", "allocation": 33},
    {"variant_key": "pricey", "allocation": 33},
]
GUARDED = online_experiment(KEY, "unused", variants=ARMS, **COST_GUARD)


def _calls(units: dict[str, str], arms: set[str], rng: random.Random) -> list[dict]:
    """An impression and three LLM calls per unit of ``arms``; the treatments cost more."""
    events = []
    for unit, arm in units.items():
        if arm not in arms:
            continue
        base = {"experiment_key": KEY, "variant_key": arm, "session_id": unit}
        events.append(base | {"event_name": "impression"})
        cost = 1.0 if arm == "control" else 1.8
        events += [
            base | {"event_name": "llm_call", "value": cost * rng.uniform(0.8, 1.2)}
            for _ in range(3)
        ]
    return events


def _stopped(http: httpx.Client) -> list[str]:
    public = next(e for e in http.get("/api/experiments").json() if e["experiment_key"] == KEY)
    return public["stopped_arms"]


def _events(http: httpx.Client, server: Deployed) -> list[tuple[str, str]]:
    found = http.get(
        "/api/v1/experiments/results", params={"experiment_key": KEY}, headers=server.admin
    )
    return [(e["action"], e["variant_key"]) for e in found.json()[0]["guardrails"]["events"]]


def test_two_servers_upkeep_and_an_admin_take_turns(serve: Callable[..., Deployed]):
    first = serve(ONLINE_UPKEEP_SECONDS="0.2")
    second = serve(ONLINE_UPKEEP_SECONDS="0.2")
    rng = random.Random(5)
    with first.client() as http, second.client() as admin:
        assert http.post("/api/admin/metrics", json=COST, headers=first.admin).status_code == 201
        created = http.post("/api/admin/experiments", json=GUARDED, headers=first.admin)
        assert created.status_code == 201, created.text
        units = {f"visitor-{i}": _assigned(http, KEY, f"visitor-{i}") for i in range(600)}
        _send(http, _calls(units, {"control", "overruled"}, rng))
        wait_for(lambda: _stopped(http) == ["overruled"], timeout=30, what="the first stop")

        # The second arm's costs arrive as the admin resumes the first, through the other
        # server: both servers' checks race the resume.
        _send(http, _calls(units, {"pricey"}, rng))
        resume = f"/api/admin/experiments/{KEY}/arms/overruled/resume"
        assert admin.post(resume, headers=second.admin).status_code == 200
        wait_for(lambda: "pricey" in _stopped(http), timeout=30, what="the second stop")
        wait_for(lambda: len(_events(http, first)) >= 3, timeout=5, what="the events")
        for _ in range(10):  # a few more periods of both loops change nothing
            assert _stopped(admin) == ["pricey"]
            time.sleep(0.2)
        assert sorted(_events(admin, second)) == [
            ("resumed", "overruled"),
            ("stopped", "overruled"),
            ("stopped", "pricey"),
        ]
