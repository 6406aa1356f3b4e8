"""The results page shows an arm a guardrail stopped, with the numbers and a resume button
for admins, the audit trail, and a bandit's weights with their history."""

from __future__ import annotations

import html
import random
import re

import httpx

from promptlooper.online import upkeep
from promptlooper.online.demo import seed_demo
from promptlooper.variants.service import existing_variant_ids
from tests.online.test_bandits import _bandit, _round
from tests.online.test_guardrails import COST, _guard, _traffic, store
from tests.web.conftest import UiClient

PAGE = "/ui/online/homepage_hero_test"
RESUME = PAGE + "/arms/tiny_gang_social_proof/resume"


async def test_a_stopped_arm_is_shown_and_resumed_from_the_results_page(
    ui: UiClient, ui_admin: UiClient, app, client: httpx.AsyncClient, bootstrap_headers
):
    async with app.state.sessionmaker() as session:
        await seed_demo(session, existing_variant_ids)
        await session.commit()
    assert (await _guard(client, bootstrap_headers)).status_code == 200
    await store(
        app.state.sessionmaker, _traffic(300, {"control": 1.0, "tiny_gang_social_proof": 2.0})
    )
    await upkeep.run_once(app.state.sessionmaker)

    page = html.unescape((await ui_admin.get(PAGE)).text)
    headline = re.search(r'class="banner bad answer"[^>]*><strong>(.*?)</strong>', page, re.S)
    assert headline, page[:2000]
    assert re.fullmatch(
        r".+ stopped by its guardrail cost-per-call: \+\d+\.\d %, past its threshold of "
        r"\+20\.0 % — its visitors are served the control\.",
        headline[1],
    ), headline[1]
    assert "was stopped by its guardrail cost-per-call" in page
    # The built-in comparisons have no conversions to test: the guardrail's is the only test.
    assert (
        "1 treatment × 3 metrics: 1 test, so its adjusted p-value is its own; "
        "2 of 3 comparisons have no data to test yet" in page
    )
    assert "adjusted –" not in page
    assert re.search(r"adjusted \d\.\d{4}", page)
    assert "Resume arm" in page
    assert "tiny_gang_social_proof stopped by guardrail" in page
    # Moments read to the second in UTC; the exact ISO value stays in the datetime attribute.
    assert re.search(
        r'<li><time datetime="[^"]+\+00:00">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time> — '
        r"tiny_gang_social_proof stopped by guardrail",
        page,
    )
    assert not re.search(r">[^<]*\d{4}-\d\d-\d\dT\d\d:\d\d", page)  # no raw ISO as text
    assert (await ui.post(RESUME, {})).status_code == 403
    resumed = await ui_admin.post(RESUME, {})
    assert resumed.status_code == 303
    page = html.unescape((await ui_admin.get(PAGE)).text)
    assert "Arm tiny_gang_social_proof resumed" in page
    assert "was stopped by its guardrail" not in page
    # Still past its threshold: the answer says so rather than "No comparison yet".
    headline = re.search(r'class="banner bad answer"[^>]*><strong>(.*?)</strong>', page, re.S)
    assert headline, page[:2000]
    assert re.fullmatch(
        r".+ breaches its guardrail cost-per-call: \+\d+\.\d %, past its threshold of "
        r"\+20\.0 % — resumed by hand, so its visitors still see it\.",
        headline[1],
    ), headline[1]
    assert "tiny_gang_social_proof resumed by root-admin" in page


async def test_a_bandit_shows_its_weights_and_their_history(
    ui_admin: UiClient, app, client: httpx.AsyncClient, bootstrap_headers
):
    created = await client.post("/api/admin/experiments", json=_bandit(), headers=bootstrap_headers)
    assert created.status_code == 201
    for index in range(2):
        await _round(
            app.state.sessionmaker, [f"u{index}-{i}" for i in range(300)], random.Random(index)
        )
    page = html.unescape((await ui_admin.get("/ui/online/answer_bandit")).text)
    assert "Guardrails and traffic" in page
    assert "Bandit weight (%)" in page
    assert "Weight history" in page
    assert page.count("<td>bandit</td>") >= 1
    changed = r'<td><time datetime="[^"]+">[\d:\- ]+ UTC</time></td><td>bandit</td>'
    assert re.search(changed, page)


async def test_saving_the_edit_form_keeps_what_it_does_not_show(
    ui_admin: UiClient, client: httpx.AsyncClient, bootstrap_headers
):
    defined = await client.post("/api/admin/metrics", json=COST, headers=bootstrap_headers)
    assert defined.status_code == 201, defined.text
    guard = {"cost-per-call": {"threshold": 0.2, "scale": "relative"}}
    body = _bandit(auto_stop=True, guardrail_metrics=["cost-per-call"], guardrail_thresholds=guard)
    assert (
        await client.post("/api/admin/experiments", json=body, headers=bootstrap_headers)
    ).status_code == 201
    form = {
        "name": "Renamed bandit",
        "cookie_name": "pl_answer_bandit",
        "enabled": "on",
        "status": "running",
        "coverage": "100",
        "primary_metric": "conversion",
        "variants.0.variant_key": "control",
        "variants.0.allocation": "50",
        "variants.1.variant_key": "better",
        "variants.1.allocation": "50",
        "control": "0",
    }

    async def save(**ticked: str) -> dict:
        page = await ui_admin.get("/ui/online/answer_bandit/edit")
        version = re.search(r'name="version" value="([0-9a-f]+)"', page.text)
        assert version
        saved = await ui_admin.post(
            "/ui/online/answer_bandit/edit", form | ticked | {"version": version[1]}
        )
        assert saved.status_code == 303, saved.text
        url = "/api/admin/experiments/answer_bandit"
        return (await client.get(url, headers=bootstrap_headers)).json()

    found = await save(**{"guardrail.cost-per-call": "on"})
    assert found["name"] == "Renamed bandit"
    assert (found["type"], found["auto_stop"]) == ("bandit", True)
    assert found["bandit"] == body["bandit"]
    assert found["guardrail_thresholds"] == guard
    # Unticking the last guardrail takes its threshold and auto-stop with it.
    found = await save()
    assert (found["auto_stop"], found["guardrail_thresholds"]) == (False, {})


async def test_small_means_keep_their_significant_digits(
    ui_admin: UiClient, app, client: httpx.AsyncClient, bootstrap_headers
):
    async with app.state.sessionmaker() as session:
        await seed_demo(session, existing_variant_ids)
        await session.commit()
    assert (await _guard(client, bootstrap_headers, auto_stop=False)).status_code == 200
    # Fractions of a cent per call, as LLM calls cost.
    await store(
        app.state.sessionmaker,
        _traffic(300, {"control": 0.0004, "tiny_gang_social_proof": 0.0008}),
    )
    page = html.unescape((await ui_admin.get(PAGE)).text)
    means = re.search(r'data-label="Control → variant">([^<]*)</td>\s*<td[^>]*>\s*▼', page)
    assert means, page
    assert re.fullmatch(r"0\.000\d{3} → 0\.000\d{3}", means[1].strip()), means[1]
    assert "0.00 → 0.00" not in page
