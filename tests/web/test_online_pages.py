"""The online experiments pages: admins only; the registry and its site-wide switch, the
definition forms (field errors, nothing half-saved, a confirm step before re-bucketing a
running experiment), start, stop and archive, and the results page's numbers and health."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.online import service, tallies
from promptlooper.online.demo import seed_demo, seed_demo_events
from promptlooper.values import MAX_AMOUNT
from promptlooper.variants.service import existing_variant_ids
from promptlooper.web import online_results as view
from tests.web.conftest import UiClient

EVIL = '<script>alert(1)</script>" onmouseover="x'
BOT = {"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"}


def _text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _definition(**changes: str) -> dict[str, str]:
    return {
        "experiment_key": "hero",
        "name": "Hero test",
        "description": "Does social proof help?",
        "cookie_name": "exp_hero",
        "enabled": "on",
        "status": "running",
        "eligible_routes": "/\n/blog/*",
        "coverage": "100",
        "hash_seed": "",
        "primary_metric": "conversion",
        "variants.0.variant_key": "control",
        "variants.0.label": "Original",
        "variants.0.allocation": "50",
        "variants.1.variant_key": "social",
        "variants.1.label": "Social proof",
        "variants.1.allocation": "50",
        "control": "0",
    } | changes


async def _create(ui: UiClient, **changes: str) -> httpx.Response:
    await ui.get("/ui/online/new")
    return await ui.post("/ui/online/new", _definition(**changes))


async def _edit_form(ui: UiClient, key: str = "hero") -> dict[str, str]:
    """The definition as typed at creation (key left out), with the version of the edit form
    just loaded: what an admin sends back."""
    form = await ui.get(f"/ui/online/{key}/edit")
    version = re.search(r'name="version" value="([0-9a-f]+)"', form.text)
    assert version, "the edit form carries the version it was loaded at"
    edited = {k: v for k, v in _definition().items() if k != "experiment_key"}
    return edited | {"version": version[1]}


async def _experiments(app: FastAPI) -> list:
    async with app.state.sessionmaker() as session:
        return await service.list_experiments(session, include_archived=True)


async def _sessions(
    app: FastAPI,
    variant: str,
    count: int,
    converting: int,
    *,
    key: str = "hero",
    days: int = 3,
    value: float = 10.0,
) -> None:
    """``count`` sessions of ``variant`` with an impression each, the first ``converting`` of
    them converting with a ``value`` (10), spread over the last ``days`` days; stored as
    ingestion stores them."""
    now = datetime.now(UTC)
    rows = []
    for i in range(count):
        moment = now - timedelta(days=i % days)
        base = {"experiment_key": key, "variant_key": variant, "session_id": f"{variant}-{i}"}
        common = {"path": "/", "event_id": None, "metadata": None, "created_at": moment}
        rows.append(base | common | {"event_type": "impression", "value": None})
        if i < converting:
            rows.append(base | common | {"event_type": "conversion", "value": value})
    async with app.state.sessionmaker() as session:
        await tallies.record(session, rows)
        await session.commit()


async def test_every_page_and_action_is_for_admins_only(ui: UiClient, ui_admin: UiClient, app):
    assert (await _create(ui_admin)).status_code == 303
    for url in ("/ui/online", "/ui/online/new", "/ui/online/hero", "/ui/online/hero/edit"):
        response = await ui.get(url)
        assert response.status_code == 403, url
        assert "Admin rights required" in response.text
    await ui.get("/ui/")
    posts = {
        "/ui/online/new": _definition(experiment_key="other", cookie_name="exp_other"),
        "/ui/online/hero/edit": _definition(name="Taken over"),
        "/ui/online/hero/status": {"status": "stopped"},
        "/ui/online/hero/archive": {},
        "/ui/online/settings": {"experiments_enabled": "off"},
    }
    for url, data in posts.items():
        assert (await ui.post(url, data)).status_code == 403, url
    (experiment,) = await _experiments(app)
    assert (experiment.name, experiment.status, experiment.archived_at) == (
        "Hero test",
        "running",
        None,
    )
    async with app.state.sessionmaker() as session:
        assert await service.experiments_enabled(session)
    # The navigation shows Experiments to admins only.
    assert 'href="/ui/online"' not in (await ui.get("/ui/")).text
    assert 'href="/ui/online"' in (await ui_admin.get("/ui/")).text


async def test_the_registry_teaches_when_empty_then_lists_each_definition(ui_admin: UiClient):
    empty = await ui_admin.get("/ui/online")
    assert empty.status_code == 200
    assert "No online experiments yet" in empty.text
    assert 'href="/ui/online/new"' in empty.text

    created = await _create(ui_admin, coverage="80")
    assert created.headers["location"] == "/ui/online/hero"
    landing = await ui_admin.get("/ui/online/hero")
    assert "Experiment Hero test created (running)." in _text(landing.text)
    assert "No events yet" in landing.text
    # The hint's command as typed: a full address, and a browser's user agent (a curl one is
    # refused as a bot's).
    hint = html.unescape(landing.text)
    assert "curl -X POST http://testserver/api/experiments/impression -A 'Mozilla/5.0'" in hint

    listed = _text((await ui_admin.get("/ui/online")).text)
    assert "1 experiment, 1 running" in listed
    health = "2 variants · 0 sessions · no data yet · needs"
    assert f"Hero test hero running {health}" in listed  # the health column, as on the home page
    assert "sessions per arm yes / , /blog/* 80.0" in listed
    assert "control (Original) 50.0 control" in listed
    assert "social (Social proof) 50.0" in listed
    assert "exp_hero" in listed


async def test_create_refusals_are_beside_their_fields_and_nothing_is_saved(
    ui_admin: UiClient, app
):
    cases = {
        "must sum to 100": {"variants.1.allocation": "40"},
        "exactly one control is needed, found 0": {"control": ""},
        "the variant key 'control' is used twice": {"variants.1.variant_key": "control"},
        "Input should be a valid number": {"variants.1.allocation": "half"},
        "must start with /": {"eligible_routes": "blog"},
        "less than or equal to 100": {"coverage": "150"},
        "greater than 0": {"variants.0.allocation": "100", "variants.1.allocation": "0"},
        "more than 2 decimals": {
            "variants.0.allocation": "99.9999999",
            "variants.1.allocation": "0.0000001",
        },
    }
    for message, change in cases.items():
        refused = await _create(ui_admin, **change)
        assert refused.status_code == 422, change
        assert message in html.unescape(refused.text), change
        assert 'class="error"' in refused.text
        # What was typed stays.
        assert 'value="Social proof"' in refused.text
    # A key used twice is shown beside its second use, counted in the rows as typed (a blank
    # row between them is skipped, not numbered).
    twice = await _create(ui_admin, **{"variants.1.variant_key": "", "variants.1.allocation": "",
                                       "variants.1.label": "",
                                       "variants.0.allocation": "50",
                                       "variants.2.variant_key": "control",
                                       "variants.2.allocation": "50"})  # fmt: skip
    assert twice.status_code == 422
    row = re.search(
        r'name="variants\.2\.variant_key"[^>]*>\s*<small class="error">([^<]+)', twice.text
    )
    assert row, twice.text
    assert html.unescape(row[1]) == "the variant key 'control' is used twice"
    beside = await _create(ui_admin, **{"variants.1.allocation": "half"})
    row = re.search(
        r'name="variants\.1\.allocation"[^>]*>\s*<small class="error">([^<]+)', beside.text
    )
    assert row
    assert "valid number" in row[1]
    zero = await _create(ui_admin, **{"variants.0.allocation": "100", "variants.1.allocation": "0"})
    row = re.search(
        r'name="variants\.1\.allocation"[^>]*>\s*<small class="error">([^<]+)', zero.text
    )
    assert row
    assert "greater than 0" in row[1]
    assert await _experiments(app) == []

    assert (await _create(ui_admin)).status_code == 303
    clash = await _create(ui_admin, experiment_key="hero2")  # same cookie
    assert clash.status_code == 422
    assert re.search(r'id="e-cookie_name">cookie_name .+ already used', html.unescape(clash.text))
    again = await _create(ui_admin, cookie_name="exp_hero2")  # same key
    assert again.status_code == 422
    assert 'id="e-experiment_key"' in again.text
    unknown = await _create(
        ui_admin,
        experiment_key="hero3",
        cookie_name="exp_hero3",
        **{"variants.1.agent_variant_id": "00000000-0000-0000-0000-000000000001"},
    )
    assert unknown.status_code == 422
    assert "no agent variant" in unknown.text
    assert [e.experiment_key for e in await _experiments(app)] == ["hero"]


async def test_a_bad_key_or_variant_key_is_refused_in_words_beside_its_input(ui_admin: UiClient):
    """A slug's pattern is said in words, as the API and the CLI say it, not as a regex."""
    words = "must be lowercase letters and digits, words joined by - or _ (like checkout-button)"

    refused = await _create(ui_admin, experiment_key="Bad Key!", **{"variants.1.variant_key": "B"})

    assert refused.status_code == 422
    assert f'<small class="error" id="e-experiment_key">{words}</small>' in refused.text
    row = re.search(
        r'name="variants\.1\.variant_key"[^>]*>\s*<small class="error">([^<]+)', refused.text
    )
    assert row
    assert row[1] == words
    assert "pattern" not in html.unescape(refused.text)


async def test_a_form_without_the_csrf_token_is_refused(ui_admin: UiClient, app):
    await ui_admin.get("/ui/online/new")
    refused = await ui_admin.post("/ui/online/new", _definition(), csrf="")
    assert refused.status_code == 403
    assert "did not come from this site" in refused.text
    forged = await ui_admin.post("/ui/online/settings", {"experiments_enabled": "off"}, csrf="x")
    assert forged.status_code == 403
    assert await _experiments(app) == []
    async with app.state.sessionmaker() as session:
        assert await service.experiments_enabled(session)


async def test_more_variant_rows_come_with_a_button_and_a_third_arm_saves(ui_admin, app):
    form = await ui_admin.get("/ui/online/new")
    assert form.text.count('name="control"') == 4  # two filled in, two spare
    more = await ui_admin.post("/ui/online/new", _definition(rows="4", add_variant="1"))
    assert more.status_code == 200
    assert more.text.count('name="control"') == 5
    assert await _experiments(app) == []
    three = _definition(
        **{
            "variants.0.allocation": "40",
            "variants.1.allocation": "30",
            "variants.3.variant_key": "urgency",
            "variants.3.allocation": "30",
        }
    )
    assert (await ui_admin.post("/ui/online/new", three)).status_code == 303
    (experiment,) = await _experiments(app)
    assert [(v["variant_key"], v["allocation"]) for v in experiment.variants] == [
        ("control", 40),
        ("social", 30),
        ("urgency", 30),
    ]


async def test_user_text_is_escaped_on_every_page(ui_admin: UiClient):
    made = await _create(
        ui_admin,
        name=EVIL,
        description=EVIL,
        eligible_routes="/" + EVIL,
        hash_seed=EVIL,
        **{"variants.0.label": EVIL, "variants.1.label": EVIL},
    )
    assert made.status_code == 303, made.text
    await _create(ui_admin, experiment_key="bad", cookie_name="exp_bad", name=EVIL,
                  **{"variants.1.allocation": "x", "variants.1.label": EVIL})  # fmt: skip
    refused = await ui_admin.post("/ui/online/new", _definition(name=EVIL, coverage="x"))
    for page in (
        (await ui_admin.get("/ui/online")).text,
        (await ui_admin.get("/ui/online/hero")).text,
        (await ui_admin.get("/ui/online/hero/edit")).text,
        refused.text,
    ):
        assert "<script>alert(1)" not in page
        assert '" onmouseover="x' not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34; onmouseover=&#34;x" in page


async def test_editing_a_running_experiment_asks_before_it_re_buckets(ui_admin: UiClient, app):
    await _create(ui_admin)
    form = await ui_admin.get("/ui/online/hero/edit")
    assert "This experiment is running" in form.text
    assert 'value="hero"' in form.text  # the seed, shown
    edited = await _edit_form(ui_admin)

    # A label is safe: saved at once.
    saved = await ui_admin.post("/ui/online/hero/edit", edited | {"variants.1.label": "Proof"})
    assert saved.status_code == 303
    (experiment,) = await _experiments(app)
    assert experiment.variants[1]["label"] == "Proof"

    # A new split and seed move units: the form says how, and saves nothing yet.
    edited = await _edit_form(ui_admin)
    risky = edited | {"variants.0.allocation": "70", "variants.1.allocation": "30",
                      "hash_seed": "fresh"}  # fmt: skip
    asked = await ui_admin.post("/ui/online/hero/edit", risky)
    assert asked.status_code == 200
    said = _text(asked.text)
    assert "Not saved yet." in said
    assert "the hash seed changes: every unit is assigned again" in said
    assert "the allocations change" in said
    assert 'name="confirmed" value="yes"' in asked.text
    assert "Save and re-bucket" in said
    (experiment,) = await _experiments(app)
    assert (experiment.hash_seed, experiment.variants[0]["allocation"]) == ("hero", 50)

    confirmed = await ui_admin.post("/ui/online/hero/edit", risky | {"confirmed": "yes"})
    assert confirmed.status_code == 303
    (experiment,) = await _experiments(app)
    assert (experiment.hash_seed, experiment.variants[0]["allocation"]) == ("fresh", 70)
    risky |= await _edit_form(ui_admin) | {"hash_seed": "fresh"}

    # Renaming an arm of a running experiment is refused beside the variants; nothing saved.
    renamed = await ui_admin.post(
        "/ui/online/hero/edit",
        risky | {"confirmed": "yes", "variants.1.variant_key": "other", "name": "Changed"},
    )
    assert renamed.status_code == 422
    assert "cannot change because it is running" in html.unescape(renamed.text)
    (experiment,) = await _experiments(app)
    assert experiment.name == "Hero test"


async def test_a_running_ab_test_turned_bandit_is_refused_before_any_confirmation(
    ui_admin: UiClient, app
):
    """New allocations would ask to confirm a re-bucketing, but the edit cannot be saved at
    all: the refusal comes at once, beside the type, and nothing is saved."""
    await _create(ui_admin)
    edited = await _edit_form(ui_admin)
    bandit = edited | {"type": "bandit", "bandit.every_exposures": "200",
                       "bandit.every_seconds": "3600", "bandit.floor": "0.05",
                       "variants.0.allocation": "70", "variants.1.allocation": "30"}  # fmt: skip

    refused = await ui_admin.post("/ui/online/hero/edit", bandit)

    assert refused.status_code == 422
    assert "Save and re-bucket" not in refused.text
    beside = re.search(r'<small class="error" id="e-type">([^<]+)</small>', refused.text)
    assert beside, refused.text
    assert html.unescape(beside[1]) == (
        "'hero' is an A/B test that has assigned units; as a bandit it would move them to "
        "other arms once its weights change, while their earlier events stay under the arm "
        "they had. Create a new experiment instead"
    )
    (experiment,) = await _experiments(app)
    assert (experiment.type, experiment.variants[0]["allocation"]) == ("ab", 50)


async def test_an_edit_on_a_stale_form_is_refused_and_keeps_what_was_typed(ui_admin: UiClient, app):
    """Two admins open the same form; the second to save is told, instead of silently
    undoing the first one's change."""
    await _create(ui_admin)
    first = await _edit_form(ui_admin)
    second = await _edit_form(ui_admin)
    saved = await ui_admin.post("/ui/online/hero/edit", first | {"name": "First admin's name"})
    assert saved.status_code == 303

    stale = await ui_admin.post(
        "/ui/online/hero/edit", second | {"description": "Second admin's words"}
    )
    assert stale.status_code == 409
    said = _text(stale.text)
    assert "changed since this form was loaded; nothing was saved" in said
    assert "Second admin's words" in said  # what was typed stays, to copy over
    (experiment,) = await _experiments(app)
    assert (experiment.name, experiment.description) == (
        "First admin's name",
        "Does social proof help?",
    )

    # A start or stop makes an open form stale too.
    fresh = await _edit_form(ui_admin)
    await ui_admin.post("/ui/online/hero/status", {"status": "stopped"})
    refused = await ui_admin.post("/ui/online/hero/edit", fresh | {"status": "running"})
    assert refused.status_code == 409
    (experiment,) = await _experiments(app)
    assert experiment.status == "stopped"


async def test_a_started_experiment_cannot_be_edited_back_to_draft(ui_admin: UiClient, app):
    await _create(ui_admin)
    refused = await ui_admin.post(
        "/ui/online/hero/edit", await _edit_form(ui_admin) | {"status": "draft"}
    )
    assert refused.status_code == 422
    beside = re.search(r'name="status".*?<small class="error">([^<]+)', refused.text, re.S)
    assert beside, refused.text
    assert "cannot go back to draft; stop it instead" in html.unescape(beside[1])
    (experiment,) = await _experiments(app)
    assert experiment.status == "running"


async def test_start_stop_and_archive(ui_admin: UiClient, app):
    await _create(ui_admin, status="draft")
    page = await ui_admin.get("/ui/online/hero")
    assert "Start experiment" in page.text
    assert "Archive experiment" in page.text
    started = await ui_admin.post("/ui/online/hero/status", {"status": "running"})
    assert started.status_code == 303
    page = await ui_admin.get("/ui/online/hero")
    assert "started: it assigns units" in _text(page.text)
    assert "Stop experiment" in page.text
    (experiment,) = await _experiments(app)
    assert experiment.status == "running"

    stopped = await ui_admin.post("/ui/online/hero/status", {"status": "stopped"})
    assert stopped.status_code == 303
    (experiment,) = await _experiments(app)
    assert experiment.status == "stopped"
    bad = await ui_admin.post("/ui/online/hero/status", {"status": "paused"})
    assert bad.status_code == 422

    await ui_admin.get("/ui/online/hero")
    archived = await ui_admin.post("/ui/online/hero/archive", {})
    assert archived.status_code == 303
    listed = await ui_admin.get("/ui/online")
    assert "Experiment Hero test archived" in _text(listed.text)
    assert "<h2>Archived</h2>" in listed.text
    (experiment,) = await _experiments(app)
    assert experiment.archived_at is not None
    revived = await ui_admin.post("/ui/online/hero/status", {"status": "running"})
    assert revived.status_code == 409
    assert "is archived" in html.unescape(revived.text)
    assert (await ui_admin.get("/ui/online/missing")).status_code == 404
    assert (await ui_admin.post("/ui/online/missing/archive", {})).status_code == 404


async def test_the_site_wide_switch(ui_admin: UiClient, app, client: httpx.AsyncClient):
    await _create(ui_admin)
    page = await ui_admin.get("/ui/online")
    assert "Switch experiments off" in page.text
    off = await ui_admin.post("/ui/online/settings", {"experiments_enabled": "off"})
    assert off.status_code == 303
    page = await ui_admin.get("/ui/online")
    assert "switched OFF site-wide" in page.text
    assert "Hero test" in page.text  # still listed, to be switched back on
    event = {"experiment_key": "hero", "variant_key": "control", "session_id": "s1"}
    answer = await client.post("/api/experiments/impression", json=event, headers=BROWSER)
    assert answer.json() == {"ok": True, "accepted": False}
    await _sessions(app, "control", 40, 4)
    results = (await ui_admin.get("/ui/online/hero")).text
    off = results.index("Online experiments are switched off site-wide")
    assert off < results.index('answer" role=')  # the notice comes before the headline
    on = await ui_admin.post("/ui/online/settings", {"experiments_enabled": "on"})
    assert on.status_code == 303
    answer = await client.post("/api/experiments/impression", json=event, headers=BROWSER)
    assert answer.json() == {"ok": True, "accepted": True}


async def test_results_answer_first_with_numbers_intervals_and_series(ui_admin: UiClient, app):
    await _create(ui_admin)
    await _sessions(app, "control", 1000, 100)
    await _sessions(app, "social", 1000, 150)
    page = await ui_admin.get("/ui/online/hero")
    assert page.status_code == 200
    said = _text(page.text)
    answer = re.search(
        r"Social proof: \+50\.0 % conversion \(95 % CI \+(\d+\.\d) % to \+(\d+\.\d) %\), "
        r"(> 99\.9|\d+\.\d) % chance to beat control — significantly better than control\.",
        said,
    )
    assert answer, said[:600]
    # One rounding for the answer and the table: never a certainty the data do not give.
    assert answer[3] == "99.7"  # it read "100 %" when the headline rounded to integers
    assert said.count("99.7 % chance to beat control") == 1
    assert said.count("99.7 %") >= 2  # the headline, and the table's row
    # Per variant: allocation, exposed, impressions, clicks, starts, submits, conversions,
    # rate, value per session.
    assert "Original (control) control 50.0 1,000 1,000 0 0 0 100 10.00 1.00" in said
    assert "Social proof social 50.0 1,000 1,000 0 0 0 150 15.00 1.50" in said
    assert "▲ +50.0 %" in said
    assert "significantly better" in said
    assert 'class="forest-plot good"' in page.text
    assert page.text.count('<svg class="forest-plot') == 2
    assert "Holm–Bonferroni" in said
    assert "1 treatment × 2 metrics: p-values adjusted across 2 tests." in said
    assert "Sample-ratio mismatch" not in said
    assert "Not enough data" not in said
    assert "Healthy: the split matches the allocations (sample-ratio p = 1)" in said
    bh = await ui_admin.get("/ui/online/hero?correction=bh")
    assert "<strong>Benjamini–Hochberg</strong>" in bh.text

    spec = _chart(page.text, "exposure-chart")
    assert spec["time"] is True
    assert len(spec["x"]) == 3
    assert [s["values"][-1] for s in spec["series"]] == [1000, 1000]
    lift = _chart(page.text, "lift-chart")
    assert lift["series"][0]["values"][-1] == pytest.approx(50.0)
    # An arm keeps its colour and line style from one chart to the other.
    assert [(s["color"], s["style"]) for s in spec["series"]] == [("muted", 0), ("accent", 1)]
    assert [(s["color"], s["style"]) for s in lift["series"]] == [("accent", 1)]
    assert "uPlot.iife.min.js" in page.text
    assert "charts.js" in page.text


async def test_the_largest_values_accepted_still_give_a_results_page(ui_admin: UiClient, app):
    """Every conversion worth the most an event may carry: the squares summed over thousands
    of sessions stay inside a float's range, and the page reads them."""
    await _create(ui_admin)
    await _sessions(app, "control", 2000, 1500, value=MAX_AMOUNT)
    await _sessions(app, "social", 2000, 1900, value=MAX_AMOUNT)
    page = await ui_admin.get("/ui/online/hero")
    assert page.status_code == 200, page.text[-2000:]
    said = _text(page.text)
    assert "Original (control) control 50.0 2,000 2,000 0 0 0 1,500 75.00 7.50e+14" in said
    assert "value per session 7.50e+14 → 9.50e+14 ▲ +26.7 %" in said


async def test_without_conversions_there_is_no_empty_lift_chart(ui_admin: UiClient, app):
    await _create(ui_admin)
    await _sessions(app, "control", 50, 0, days=1)
    await _sessions(app, "social", 50, 0, days=1)

    page = await ui_admin.get("/ui/online/hero")

    assert 'id="exposure-chart"' in page.text
    assert 'id="lift-chart"' not in page.text
    said = "No lift in conversion rate to draw yet: the control (Original) has no conversions."
    assert said in page.text


async def test_without_treatment_data_the_page_says_so_rather_than_blame_control(
    ui_admin: UiClient, app
):
    await _create(ui_admin)
    await _sessions(app, "control", 1, 1, days=1)

    page = await ui_admin.get("/ui/online/hero")

    assert 'id="lift-chart"' not in page.text
    said = "No lift in conversion rate to draw yet: Social proof has no exposed sessions."
    assert said in page.text


async def test_a_lift_significant_only_before_the_adjustment_is_not_called_significant(
    ui_admin: UiClient, app
):
    await _create(ui_admin)
    await _sessions(app, "control", 1000, 100)
    await _sessions(app, "social", 1000, 136)  # p ≈ 0.03 alone, ≈ 0.07 for two metrics
    page = await ui_admin.get("/ui/online/hero")
    said = _text(page.text)
    assert re.search(
        r"— not significant once adjusted for the several comparisons "
        r"\(adjusted p 0\.0[5-9]\d\): keep it running\.",
        said,
    ), said[:600]
    assert "significantly better" not in said
    assert "▲ +" not in said
    assert 'class="forest-plot good"' not in page.text
    assert said.count("not significant") >= 2


async def test_results_warn_of_a_skewed_split_little_data_and_refused_events(
    ui_admin: UiClient, app, client: httpx.AsyncClient
):
    await _create(ui_admin)
    await _sessions(app, "control", 600, 60)
    await _sessions(app, "social", 300, 45)
    event = {"experiment_key": "hero", "variant_key": "control", "session_id": "bot-1"}
    assert (await client.post("/api/experiments/impression", json=event, headers=BOT)).json() == {
        "ok": True,
        "accepted": False,
    }
    event = {"experiment_key": "hero", "variant_key": "nope", "session_id": "s"}
    await client.post("/api/experiments/impression", json=event, headers=BROWSER)
    said = _text((await ui_admin.get("/ui/online/hero")).text)
    assert said.index("Sample-ratio mismatch: do not trust these results") < said.index("Variants")
    assert re.search(
        r"Sample-ratio mismatch \(p = [0-9.e-]+\): the exposed sessions \(600, 300\)", said
    )
    assert (
        "2 events refused: 1 from bots (crawler or headless-browser user agents), "
        "1 naming a variant it does not have." in said
    )

    await _create(ui_admin, experiment_key="small", cookie_name="exp_small")
    await _sessions(app, "control", 40, 4, key="small")
    await _sessions(app, "social", 40, 8, key="small")
    said = _text((await ui_admin.get("/ui/online/small")).text)
    assert "too early to call: not enough data yet" in said
    assert (
        "Not enough data yet: the smallest arm has 40 exposed sessions of the 100 each arm needs."
        in said
    )


async def test_the_demo_traffic_shows_a_lift_and_one_health_warning(ui_admin: UiClient, app):
    async with app.state.sessionmaker() as session:
        await seed_demo(session, existing_variant_ids)
        assert await seed_demo_events(session) == ["homepage_hero_test", "pricing_cta_test"]
        await session.commit()
    async with app.state.sessionmaker() as session:
        assert await seed_demo_events(session) == []  # a second `make demo` adds nothing

    hero = _text((await ui_admin.get("/ui/online/homepage_hero_test")).text)
    assert re.search(r"Social proof: \+\d+\.\d % conversion \(95 % CI \+", hero), hero[:500]
    assert "Sample-ratio mismatch" not in hero
    assert "Not enough data" not in hero
    assert "2,500 2,500" in hero  # allocation 50, then exposed sessions and impressions
    assert "significantly better than control" in hero
    pricing = _text((await ui_admin.get("/ui/online/pricing_cta_test")).text)
    assert "Sample-ratio mismatch: do not trust these results" in pricing
    assert "exposed sessions (900, 600)" in pricing


async def test_defined_metrics_are_chosen_in_the_form_and_shown_on_the_results_page(
    ui_admin: UiClient, client: httpx.AsyncClient, bootstrap_headers
):
    metric = {"name": "cost-per-order", "source": "order", "aggregation": "mean"}
    metric["direction"] = "lower"
    created = await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)
    assert created.status_code == 201, created.text

    form = await ui_admin.get("/ui/online/new")
    assert 'name="secondary.cost-per-order"' in form.text
    saved = await ui_admin.post("/ui/online/new", _definition(**{"guardrail.cost-per-order": "on"}))
    assert saved.status_code == 303, saved.text
    edit = await ui_admin.get("/ui/online/hero/edit")
    assert 'name="guardrail.cost-per-order" value="on" checked' in edit.text
    for index in range(6):
        unit = {"experiment_key": "hero", "variant_key": ("control", "social")[index % 2]}
        unit["session_id"] = f"s{index}"
        for name, value in (("impression", None), ("order", 10.0 + index)):
            body = unit | {"event_name": name, "value": value}
            sent = await client.post("/api/experiments/event", json=body, headers=BROWSER)
            assert sent.json()["accepted"] is True

    page = _text((await ui_admin.get("/ui/online/hero")).text)

    assert "cost-per-order guardrail · lower is better" in page
    assert "× 3 metrics" in page


def _chart(page: str, name: str) -> dict:
    """The uPlot spec the page embeds for chart ``name``."""
    found = re.search(rf'<script type="application/json" id="{name}">(.+?)</script>', page, re.S)
    assert found, f"no {name} on the page"
    return json.loads(found[1])


def _headline(page: str) -> tuple[str, str]:
    found = re.search(r'class="banner (\w+) answer"[^>]*><strong>(.*?)</strong>', page, re.S)
    assert found, page[:2000]
    return found[1], html.unescape(found[2])


async def test_the_headline_answers_on_a_defined_primary_metric(
    ui_admin: UiClient, client: httpx.AsyncClient, bootstrap_headers
):
    metric = {"name": "spend", "source": "purchase", "aggregation": "mean"}
    created = await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)
    assert created.status_code == 201, created.text
    saved = await ui_admin.post("/ui/online/new", _definition(primary_metric="spend"))
    assert saved.status_code == 303, saved.text
    # No conversion at all: spend alone decides, and social proof's sessions spend 20 % more.
    events = []
    for variant, base in (("control", 10.0), ("social", 12.0)):
        for index in range(120):
            unit = {
                "experiment_key": "hero",
                "variant_key": variant,
                "session_id": f"{variant}{index}",
            }
            events.append(unit | {"event_name": "impression", "event_id": f"i-{variant}{index}"})
            value = base + (index % 5) - 2
            events.append(
                unit | {"event_name": "purchase", "value": value, "event_id": f"p-{variant}{index}"}
            )
    for start in range(0, len(events), 500):
        sent = await client.post(
            "/api/experiments/batch", json={"events": events[start : start + 500]}, headers=BROWSER
        )
        assert sent.json()["rejected"] == 0, sent.text

    page = (await ui_admin.get("/ui/online/hero")).text
    kind, sentence = _headline(page)

    # The primary leads the comparisons, before the built-in conversion and value rows.
    metrics = re.findall(r'<td data-label="Metric">([^<]*)<', page)
    assert metrics == ["spend", "conversion", "value per session"], metrics
    assert kind == "good"
    assert re.match(
        r"Social proof: \+20\.0 % spend \(95 % CI \+\d+\.\d % to \+\d+\.\d %\), "
        r"> 99\.9 % chance to beat control — significantly better than control\.",
        sentence,
    ), sentence
    # The lift over time is in the primary metric too, agreeing with the headline.
    lift = _chart(page, "lift-chart")
    assert lift["ylabel"] == "lift in spend (%)"
    assert lift["series"][0]["values"][-1] == pytest.approx(20.0)
    assert "Cumulative relative lift in spend of each treatment against control" in page
    exposure = _chart(page, "exposure-chart")
    assert exposure["ylabel"] == "units measured (spend)"
    assert [arm["values"][-1] for arm in exposure["series"]] == [120, 120]


def test_the_lift_chart_is_not_rounded_before_its_legend_rounds_it():
    """The legend rounds a lift to one decimal as the headline does; a spec already rounded
    to two would turn 41.245 % into 41.25 % and then +41.3 % beside a headline of +41.2 %."""
    arms = [{"variant_key": "control", "label": "Original"}, {"variant_key": "b"}]
    experiment = SimpleNamespace(variants=arms)
    series = {
        "days": [date(2026, 12, 6)],
        "exposed": {"control": [2500], "b": [2500]},
        "lift": {"b": [363 / 257 - 1]},
    }
    exposure, lift = view.charts(experiment, series)  # type: ignore[arg-type]
    assert lift is not None
    assert lift["series"][0]["values"] == [pytest.approx(41.245136, abs=1e-6)]
    assert (lift["unit"], lift["digits"], lift["signed"]) == ("%", 1, True)
    assert [(s["label"], s["style"]) for s in exposure["series"]] == [("Original", 0), ("b", 1)]


def test_arms_are_told_apart_by_colours_that_mean_nothing():
    """Green, red and amber say better, worse, warning everywhere else on the page: a fourth
    arm drawn green would read as a winner."""
    keys = ["control", "b", "c", "d", "e"]
    experiment = SimpleNamespace(variants=[{"variant_key": key} for key in keys])
    series = {"days": [date(2026, 12, 6)], "exposed": {key: [10] for key in keys}, "lift": {}}
    exposure, _ = view.charts(experiment, series)  # type: ignore[arg-type]
    colours = [s["color"] for s in exposure["series"]]
    assert len(set(colours)) == 5
    assert not {"good", "bad", "warn"} & set(colours)


async def test_the_form_says_what_each_metric_measures(
    ui_admin: UiClient, client: httpx.AsyncClient, bootstrap_headers
):
    # Two metrics on the same events that only their definitions tell apart.
    for metric in (
        {"name": "spend", "source": "purchase", "aggregation": "mean"},
        {"name": "per-purchase", "source": "purchase", "aggregation": "ratio",
         "denominator": "purchase", "direction": "lower"},
    ):  # fmt: skip
        created = await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)
        assert created.status_code == 201, created.text

    page = html.unescape((await ui_admin.get("/ui/online/new")).text)

    primary = re.search(r'<select id="f-primary_metric".*?</select>', page, re.S)
    assert primary, page[:2000]
    options = re.findall(r"<option[^>]*>(.*?)</option>", primary[0])
    assert "spend — mean of purchase, better higher" in options
    assert "per-purchase — value per purchase event, better lower" in options
    assert "conversion — built-in event" in options


def test_without_a_lift_in_a_defined_primary_metric_the_page_says_what_is_missing():
    arms = [{"variant_key": "control", "label": "Original"}, {"variant_key": "b", "label": "B"}]
    experiment = SimpleNamespace(variants=arms)
    metric = {"name": "cost", "direction": "lower", "lift": {"b": [None]}}
    series = {
        "days": [date(2026, 12, 6)],
        "exposed": {"control": [0], "b": [3]},
        "lift": {"b": [None]},
        "metric": metric | {"units": {"control": [0], "b": [3]}},
    }
    assert view.charts(experiment, series)[1] is None  # type: ignore[arg-type]
    assert view.lift_metric(series) == "cost, lower is better"
    said = view.no_lift(experiment, series)  # type: ignore[arg-type]
    assert said == "the control (Original) has no units measured yet"
    series["metric"] = metric | {"units": {"control": [1], "b": [1]}}
    said = view.no_lift(experiment, series)  # type: ignore[arg-type]
    assert said.startswith("each arm needs two units whose cost varies")
