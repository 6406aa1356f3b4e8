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


BANDIT_EDIT = {
    "name": "Renamed bandit",
    "cookie_name": "pl_answer_bandit",
    "enabled": "on",
    "status": "running",
    "coverage": "100",
    "primary_metric": "conversion",
    "type": "bandit",
    "bandit.every_exposures": "200",
    "bandit.every_seconds": "3600",
    "bandit.floor": "0.05",
    "variants.0.variant_key": "control",
    "variants.0.allocation": "50",
    "variants.1.variant_key": "better",
    "variants.1.allocation": "50",
    "control": "0",
}
"""The edit form of ``_bandit()``'s experiment as an admin saves it, renamed."""


async def test_the_edit_form_shows_and_saves_the_bandit_auto_stop_and_thresholds(
    ui_admin: UiClient, client: httpx.AsyncClient, bootstrap_headers
):
    defined = await client.post("/api/admin/metrics", json=COST, headers=bootstrap_headers)
    assert defined.status_code == 201, defined.text
    guard = {"cost-per-call": {"threshold": 0.2, "scale": "relative"}}
    body = _bandit(auto_stop=True, guardrail_metrics=["cost-per-call"], guardrail_thresholds=guard)
    assert (
        await client.post("/api/admin/experiments", json=body, headers=bootstrap_headers)
    ).status_code == 201
    page = (await ui_admin.get("/ui/online/answer_bandit/edit")).text
    assert '<option value="bandit" selected>' in page
    assert 'name="bandit.every_exposures" type="number" value="200"' in page
    assert 'name="bandit.floor" type="number" value="0.05"' in page
    assert (
        'name="guardrail_thresholds.cost-per-call.threshold" type="number" step="any" value="0.2"'
        in page
    )
    assert re.search(r'name="auto_stop" value="on" checked', page)
    form = BANDIT_EDIT | {
        "bandit.floor": "0.1",
        "guardrail.cost-per-call": "on",
        "guardrail_thresholds.cost-per-call.threshold": "0.3",
        "guardrail_thresholds.cost-per-call.scale": "relative",
        "auto_stop": "on",
    }
    url = "/api/admin/experiments/answer_bandit"

    async def save(**changes: str) -> httpx.Response:
        page = await ui_admin.get("/ui/online/answer_bandit/edit")
        version = re.search(r'name="version" value="([0-9a-f]+)"', page.text)
        assert version
        fields = {k: v for k, v in (form | changes).items() if v is not None}
        return await ui_admin.post(
            "/ui/online/answer_bandit/edit", fields | {"version": version[1]}
        )

    saved = await save()
    assert saved.status_code == 303, saved.text
    found = (await client.get(url, headers=bootstrap_headers)).json()
    assert (found["name"], found["type"], found["auto_stop"]) == ("Renamed bandit", "bandit", True)
    assert found["bandit"] == {"every_exposures": 200, "every_seconds": 3600.0, "floor": 0.1}
    assert found["guardrail_thresholds"] == {
        "cost-per-call": {"threshold": 0.3, "scale": "relative"}
    }

    # A threshold left on an unticked guardrail, auto-stop with nothing to stop on: each is
    # refused beside its input, in the form's terms (not the API's field names), and nothing
    # is saved.
    untick = {"guardrail.cost-per-call": None}
    refused = await save(**untick)
    assert refused.status_code == 422
    beside = re.search(
        r'cost-per-call: threshold" class="num invalid">\s*<input[^>]*>\s*'
        r'<small class="error">([^<]+)</small>',
        refused.text,
    )
    assert beside
    assert html.unescape(beside[1]) == (
        "cost-per-call has a threshold but is not a guardrail; tick its guardrail box, "
        "or clear the threshold"
    )
    refused = await save(**untick, **{"guardrail_thresholds.cost-per-call.threshold": ""})
    assert refused.status_code == 422
    assert (
        '<small class="error" id="e-auto_stop">there is nothing to stop an arm on; give a '
        "threshold for a guardrail metric, or leave auto-stop off</small>"
    ) in refused.text
    shown = re.findall(r'class="error"[^>]*>([^<]*)<', refused.text)
    assert shown
    assert not [m for m in shown if re.search(r"guardrail_|auto_stop", m)], shown
    assert (await client.get(url, headers=bootstrap_headers)).json() == found
    saved = await save(
        **untick, **{"guardrail_thresholds.cost-per-call.threshold": "", "auto_stop": None}
    )
    assert saved.status_code == 303, saved.text
    found = (await client.get(url, headers=bootstrap_headers)).json()
    assert (found["auto_stop"], found["guardrail_thresholds"]) == (False, {})
    # A bandit that has assigned units stays one (the service's 409), said beside the type.
    refused = await save(**untick, **{"guardrail_thresholds.cost-per-call.threshold": "",
                                      "auto_stop": None, "type": "ab"})  # fmt: skip
    assert refused.status_code == 422
    assert re.search(
        r'id="e-type">.*is a bandit that has assigned units', html.unescape(refused.text)
    )


async def test_an_edit_form_loaded_before_a_bandit_update_still_saves(
    ui_admin: UiClient, app, client: httpx.AsyncClient, bootstrap_headers
):
    """The form's version covers what admins edit, not the weights the upkeep moves on its
    own: with a bandit updating every few minutes, a form that must be saved between two
    updates could not be saved."""
    created = await client.post("/api/admin/experiments", json=_bandit(), headers=bootstrap_headers)
    assert created.status_code == 201
    page = (await ui_admin.get("/ui/online/answer_bandit/edit")).text
    version = re.search(r'name="version" value="([0-9a-f]+)"', page)
    assert version
    await _round(app.state.sessionmaker, [f"u-{i}" for i in range(300)], random.Random(1))
    url = "/api/admin/experiments/answer_bandit"
    learned = (await client.get(url, headers=bootstrap_headers)).json()["weights"]
    assert learned is not None

    form = BANDIT_EDIT | {"version": version[1]}
    saved = await ui_admin.post("/ui/online/answer_bandit/edit", form)
    assert saved.status_code == 303, saved.text
    found = (await client.get(url, headers=bootstrap_headers)).json()
    assert (found["name"], found["weights"]) == ("Renamed bandit", learned)
    # An admin's edit since the form was loaded still refuses it.
    stale = await ui_admin.post("/ui/online/answer_bandit/edit", form | {"name": "Again"})
    assert stale.status_code == 409


NEW = "/ui/online/new"
FORM = {
    "experiment_key": "answer_guard",
    "name": "Answer guard",
    "cookie_name": "exp_answer_guard",
    "enabled": "on",
    "status": "draft",
    "coverage": "100",
    "primary_metric": "conversion",
    "type": "ab",
    "variants.0.variant_key": "control",
    "variants.0.allocation": "50",
    "variants.1.variant_key": "verbose",
    "variants.1.allocation": "50",
    "control": "0",
}


async def test_the_new_form_says_what_is_wrong_beside_each_new_field(
    ui_admin: UiClient, client: httpx.AsyncClient, bootstrap_headers
):
    assert (
        await client.post("/api/admin/metrics", json=COST, headers=bootstrap_headers)
    ).status_code == 201
    cases = [
        # (form changes, input with the error, the API's message)
        ({"guardrail.cost-per-call": "on", "guardrail_thresholds.cost-per-call.threshold": "-0.2"},
         "guardrail_thresholds.cost-per-call.threshold", "is better lower, so harm is a rise"),
        ({"guardrail.cost-per-call": "on", "guardrail_thresholds.cost-per-call.threshold": "0"},
         "guardrail_thresholds.cost-per-call.threshold", "a threshold of 0 would stop an arm"),
        ({"auto_stop": "on"}, "auto_stop", "there is nothing to stop an arm on"),
        ({"type": "bandit", "bandit.floor": "0.6"}, "bandit.floor", "less than 0.5"),
        ({"type": "bandit", "variants.2.variant_key": "third", "variants.0.allocation": "40",
          "variants.1.allocation": "30", "variants.2.allocation": "30", "bandit.floor": "0.4"},
         "bandit.floor", "leaves nothing to learn with; lower it"),
        ({"type": "bandit", "bandit.every_exposures": "0"}, "bandit.every_exposures",
         "greater than or equal to 1"),
        ({"type": "bandit", "primary_metric": "cta_click"}, "primary_metric",
         "a bandit optimises &#39;conversion&#39; or a defined metric"),
        ({"type": "<script>"}, "type", "Input should be &#39;ab&#39; or &#39;bandit&#39;"),
    ]  # fmt: skip
    for changes, field, message in cases:
        refused = await ui_admin.post(NEW, FORM | changes)
        assert refused.status_code == 422, (changes, refused.status_code)
        assert "<script>" not in refused.text
        errors = re.findall(
            r'<small class="error"(?: id="e-([^"]+)")?>([^<]*)</small>', refused.text
        )
        assert any(message in text for _, text in errors), (changes, errors)
        if field in ("auto_stop", "type") or field.startswith("bandit."):
            assert (field, next(t for _, t in errors if message in t)) in errors, errors
        else:
            assert f'name="{field}"' in refused.text
    missing = await client.get("/api/admin/experiments/answer_guard", headers=bootstrap_headers)
    assert missing.status_code == 404  # nothing was half-saved

    created = await ui_admin.post(
        NEW,
        FORM | {"type": "bandit", "bandit.every_exposures": "500", "auto_stop": "on",
                "guardrail.cost-per-call": "on",
                "guardrail_thresholds.cost-per-call.threshold": "0.25"},
    )  # fmt: skip
    assert created.status_code == 303, created.text
    found = (
        await client.get("/api/admin/experiments/answer_guard", headers=bootstrap_headers)
    ).json()
    assert (found["type"], found["auto_stop"]) == ("bandit", True)
    assert found["bandit"] == {"every_exposures": 500, "every_seconds": 3600.0, "floor": 0.05}
    assert found["guardrail_thresholds"] == {
        "cost-per-call": {"threshold": 0.25, "scale": "relative"}
    }


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
