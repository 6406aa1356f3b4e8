"""The sweeps pages over HTTP: what each page shows, every action, escaping, CSRF, ownership,
pagination, and statements per page that do not grow with the experiment."""

from __future__ import annotations

import asyncio
import html
import json
import re
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from promptlooper.auth.principal import Principal
from promptlooper.sweeps import service as sweeps_service
from promptlooper.sweeps import verdict
from promptlooper.sweeps.models import Run
from tests.sweeps.test_search_racing import racing
from tests.web.conftest import PASSWORD, UiClient, statements
from tests.web.seeding import seed_experiment

XSS = '<script>alert(1)</script>" onmouseover="evil()'
ROWS = [
    {"input": f"My card was charged twice {XSS}", "expected": "billing"},
    {"input": "The app crashes on start", "expected": "bug"},
    {"input": "I forgot my password", "expected": "account"},
]
DOCUMENT: dict[str, Any] = {
    "name": f"triage {XSS}",
    "description": "Classify support tickets",
    "parameter_space": {
        "model": ["mock:echo", "mock:small"],
        "prompt": [f"Classify {XSS}: {{{{ input }}}}. One word.", "Ticket: {{ input }}"],
    },
    "dataset": {"rows": ROWS},
    "scorers": [
        {"name": "accuracy", "type": "exact_match", "weight": 0.7, "ignore_case": True},
        {"name": "brevity", "type": "length", "weight": 0.3, "max": 20},
    ],
    "providers": {
        "mock": {
            "models": {"small": {"accuracy": 0.9}},
            "knowledge": {"charged": "billing", "crash": "bug", "password": "account"},
        }
    },
    "concurrency": 4,
}


def escaped(html: str) -> None:
    """The hostile text is on the page only as text."""
    assert "<script>alert(1)" not in html
    assert '" onmouseover=' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def make_project(ui: UiClient, name: str = "support") -> str:
    response = await ui.post("/ui/projects", {"name": name})
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[1]


async def create_sweep(ui: UiClient, project_id: str, document: dict | None = None) -> str:
    await ui.get(f"/ui/projects/{project_id}/sweeps/new")
    text = json.dumps(document or DOCUMENT)
    response = await ui.post(f"/ui/projects/{project_id}/sweeps/new", {"document": text})
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[1]


async def run_sweep(ui: UiClient, app: FastAPI, experiment_id: str) -> None:
    await ui.get(f"/ui/sweeps/{experiment_id}")
    response = await ui.post(f"/ui/sweeps/{experiment_id}/start")
    assert response.status_code == 303
    await asyncio.wait_for(app.state.sweep_jobs.wait(uuid.UUID(experiment_id)), 30)


@pytest.fixture
async def finished(ui: UiClient, app: FastAPI) -> dict[str, str]:
    """Alice's finished sweep: 4 configs × 3 rows with the mock provider; each config's run on
    the third row then marked failed with a hostile error."""
    project_id = await make_project(ui)
    experiment_id = await create_sweep(ui, project_id)
    await run_sweep(ui, app, experiment_id)
    async with app.state.sessionmaker() as session:
        run_id = await session.scalar(
            update(Run)
            .where(Run.experiment_id == uuid.UUID(experiment_id), Run.row_index == 2)
            .values(status="failed", error=f"scorer accuracy raised {XSS}")
            .returning(Run.id)
        )
        await session.commit()
    return {"project": project_id, "experiment": experiment_id, "failed_run": str(run_id)}


def leaderboard_hashes(html: str) -> list[str]:
    return re.findall(r'name="config" value="([0-9a-f]+)"', html)


async def test_empty_list_teaches(ui: UiClient) -> None:
    project_id = await make_project(ui)
    page = await ui.get(f"/ui/projects/{project_id}/sweeps")
    assert page.status_code == 200
    assert "No sweeps in this project yet" in page.text
    assert "promptlooper sweep run" in page.text
    assert f"/ui/projects/{project_id}/sweeps/new" in page.text
    project = await ui.get(f"/ui/projects/{project_id}")
    assert project.headers["location"] == f"/ui/projects/{project_id}/sweeps"


async def test_create_start_and_list(ui: UiClient, app: FastAPI) -> None:
    project_id = await make_project(ui)
    experiment_id = await create_sweep(ui, project_id)
    draft = await ui.get(f"/ui/sweeps/{experiment_id}")
    assert "created as a draft of 12 runs" in draft.text
    assert "A draft of 12 runs: nothing has run yet" in draft.text
    assert ">Start</button>" in draft.text
    listing = await ui.get(f"/ui/projects/{project_id}/sweeps")
    assert "0 / 12 runs" in listing.text
    assert "draft" in listing.text
    escaped(listing.text)

    started = await ui.post(f"/ui/sweeps/{experiment_id}/start", {"back": "list"})
    assert started.headers["location"] == f"/ui/projects/{project_id}/sweeps"
    await asyncio.wait_for(app.state.sweep_jobs.wait(uuid.UUID(experiment_id)), 30)
    listing = await ui.get(f"/ui/projects/{project_id}/sweeps")
    assert "12 / 12 runs" in listing.text
    assert "completed" in listing.text
    assert "hx-trigger" not in listing.text  # nothing running: no polling


async def test_running_list_polls_and_cancel(ui: UiClient, app: FastAPI) -> None:
    project_id = await make_project(ui)
    slow = {**DOCUMENT, "providers": {"mock": {"latency_ms": 2000}}, "concurrency": 1}
    experiment_id = await create_sweep(ui, project_id, slow)
    await ui.get(f"/ui/sweeps/{experiment_id}")
    await ui.post(f"/ui/sweeps/{experiment_id}/start")
    listing = await ui.get(f"/ui/projects/{project_id}/sweeps")
    assert 'hx-trigger="every 2s"' in listing.text
    assert "/ 12 runs" in listing.text
    assert ">Cancel</button>" in listing.text
    fragment = await ui.get(f"/ui/projects/{project_id}/sweeps", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text
    assert 'id="experiments"' in fragment.text

    running = await ui.get(f"/ui/sweeps/{experiment_id}")
    assert 'hx-select="#progress"' in running.text
    poll = await ui.get(f"/ui/sweeps/{experiment_id}", headers={"HX-Request": "true"})
    assert 'id="progress"' in poll.text
    assert "<html" not in poll.text

    cancelled = await ui.post(f"/ui/sweeps/{experiment_id}/cancel")
    assert cancelled.headers["location"] == f"/ui/sweeps/{experiment_id}"
    page = await ui.get(f"/ui/sweeps/{experiment_id}")
    assert "cancelled; finished runs are kept" in page.text
    assert ">Resume</button>" in page.text
    assert "hx-trigger" not in page.text
    ended = await ui.get(f"/ui/sweeps/{experiment_id}", headers={"HX-Request": "true"})
    assert ended.status_code == 204
    assert ended.headers["HX-Refresh"] == "true"  # the last poll reloads the whole page
    again = await ui.post(f"/ui/sweeps/{experiment_id}/cancel")
    assert (await ui.get(again.headers["location"])).text.count("not running") == 1


async def test_new_sweep_errors_in_place(ui: UiClient) -> None:
    project_id = await make_project(ui)
    url = f"/ui/projects/{project_id}/sweeps/new"
    await ui.get(url)
    bad = {**DOCUMENT, "dataset": {"rows": []}, "concurrency": 0}
    response = await ui.post(url, {"document": json.dumps(bad)})
    assert response.status_code == 422
    assert "dataset: the dataset has no rows" in response.text
    assert "concurrency:" in response.text
    assert "&#34;concurrency&#34;: 0" in response.text  # what was typed is kept
    broken = await ui.post(url, {"document": "name: [unclosed"})
    assert broken.status_code == 422
    assert "Not valid YAML or JSON" in broken.text
    assert "name: [unclosed" in broken.text
    files = {**DOCUMENT, "dataset": {"path": "rows.csv"}}
    refused = await ui.post(url, {"document": json.dumps(files)})
    assert "dataset.path: files are read by the CLI" in refused.text
    unknown = {**DOCUMENT, "parameter_space": {"model": ["nowhere:x"]}}
    refused = await ui.post(url, {"document": json.dumps(unknown)})
    assert refused.status_code == 422
    assert "nowhere" in refused.text
    listing = await ui.get(f"/ui/projects/{project_id}/sweeps")
    assert "No sweeps in this project yet" in listing.text  # nothing half-saved


async def test_new_sweep_from_uploaded_file(ui: UiClient) -> None:
    project_id = await make_project(ui)
    url = f"/ui/projects/{project_id}/sweeps/new"
    await ui.get(url)
    import yaml

    upload = {"file": ("sweep.yaml", yaml.safe_dump({**DOCUMENT, "name": "uploaded"}))}
    response = await ui.http.post(url, data={"csrf_token": ui.csrf}, files=upload)
    assert response.status_code == 303
    page = await ui.get(response.headers["location"])
    assert "<h1>uploaded" in page.text


async def test_an_upload_over_the_limit_is_the_form_with_the_reason_beside_the_field(
    ui: UiClient,
) -> None:
    project_id = await make_project(ui)
    url = f"/ui/projects/{project_id}/sweeps/new"
    form = await ui.get(url)
    assert "At most 8 MiB." in form.text  # the API's limit for a sweep document
    big = {"file": ("sweep.yaml", b"#" * ((8 << 20) + 1))}
    response = await ui.http.post(url, data={"csrf_token": ui.csrf}, files=big)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["connection"] == "close"
    assert re.search(
        r'<input id="f-file"[^>]*aria-invalid="true" aria-describedby="e-file">', response.text
    )
    assert (
        '<small class="error" id="e-file">The file is larger than 8 MiB, the most a sweep '
        "document may be.</small>"
    ) in response.text
    assert 'name="csrf_token"' in response.text  # the form can be sent again
    listing = await ui.get(f"/ui/projects/{project_id}/sweeps")
    assert "No sweeps in this project yet" in listing.text  # nothing saved


BOUNDARY = "plboundary"
UPLOAD_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
).encode()


async def _chunked(size: int) -> Any:
    """A multipart upload of ``size`` bytes with no declared length (httpx sends it chunked)."""
    yield UPLOAD_HEAD
    for start in range(0, size, 64 << 10):
        yield b"x" * min(64 << 10, size - start)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_other_pages_refuse_a_body_over_the_limit_with_a_page(
    ui: UiClient, chunked: bool
) -> None:
    """Any page route answers an oversized body with an HTML page; the API keeps its JSON."""
    size = (2 << 20) + 1
    body = _chunked(size) if chunked else UPLOAD_HEAD + b"x" * size
    form = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    response = await ui.http.post("/ui/projects", content=body, headers=form)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["connection"] == "close"
    assert "alice" in response.text  # still the logged-in layout
    limit = "2 MiB" if not chunked else "2097152 bytes"  # declared: refused before the route
    assert limit in response.text
    api = await ui.http.post("/api/projects", content=b"x" * size, headers=form)
    assert api.status_code == 413
    assert api.json()["detail"].startswith("Request body too large")


async def test_p50_latency_is_the_provider_calls_time_not_the_wait_for_a_slot(
    ui: UiClient, app: FastAPI
) -> None:
    """Six runs at once on a provider that takes one call at a time, 40 ms each: the runs
    queue for up to 200 ms, but each call takes 40 ms, and that is the config's latency."""
    project_id = await make_project(ui)
    slow = {
        **DOCUMENT,
        "name": "one slot",
        "parameter_space": {"model": ["mock:small"], "prompt": ["Ticket: {{ input }}"]},
        "dataset": {"rows": [{"input": f"ticket {i}", "expected": "bug"} for i in range(6)]},
        "providers": {"mock": {"latency_ms": 40, "concurrency": 1}},
        "concurrency": 6,
    }
    experiment_id = await create_sweep(ui, project_id, slow)
    await run_sweep(ui, app, experiment_id)
    async with app.state.sessionmaker() as session:
        durations = sorted(
            (
                await session.scalars(
                    select(Run.duration_ms).where(Run.experiment_id == uuid.UUID(experiment_id))
                )
            ).all()
        )
    assert durations[-1] > 150  # the last run waited for the five before it
    page = (await ui.get(f"/ui/sweeps/{experiment_id}")).text
    cells = re.findall(r'<td class="num">([^<]*)</td>', page.split("<tbody>")[1])
    assert cells[-1] == "40.0", cells  # p50 latency (ms), the last numeric column
    async with app.state.sessionmaker() as session:
        experiment = await sweeps_service.get_experiment(
            session, Principal.local_operator(), uuid.UUID(experiment_id)
        )
        summary = await sweeps_service.summary(session, experiment)
    assert summary.configs[0].p50_latency_ms == pytest.approx(40.0)


async def test_experiment_page(ui: UiClient, finished: dict[str, str]) -> None:
    page = await ui.get(f"/ui/sweeps/{finished['experiment']}")
    html = page.text
    assert page.status_code == 200
    leads = r"Config #1 \([0-9a-f]{8}\) leads with \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] over 2 runs; "
    assert re.search(leads + r"(clearly ahead of|tied with) #2", html)
    assert "Δ vs #1 [95 %]" in html
    assert re.search(
        r"[+-]\d\.\d{3} <span class=\"muted\">\[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]</span>", html
    )
    assert "4 of 12 runs failed" in html  # banner (row 2 of each config)
    for column in ("Mean weighted score", "accuracy (mean)", "brevity (mean)", "Tokens in",
                   "Cost ($)", "p50 latency (ms)"):  # fmt: skip
        assert column in html
    assert "<dt>Dataset</dt><dd>3 rows</dd>" in html
    assert "<dt>Configs</dt><dd>4</dd>" in html
    assert "scorer accuracy raised" in html  # failures with their errors
    assert len(leaderboard_hashes(html)) == 4
    for kind in ("best", "env", "yaml", "report"):
        assert f"/export/{kind}" in html
    escaped(html)


async def test_leaderboard_sorts(ui: UiClient, finished: dict[str, str]) -> None:
    url = f"/ui/sweeps/{finished['experiment']}"
    default = leaderboard_hashes((await ui.get(url)).text)
    worst_first = (await ui.get(url + "?sort=score&order=asc")).text
    assert leaderboard_hashes(worst_first)[-1] == default[0]
    assert 'aria-sort="ascending"' in worst_first
    by_latency = await ui.get(url + "?sort=latency&order=desc")
    assert by_latency.status_code == 200
    by_scorer = await ui.get(url + "?sort=scorer:accuracy&order=desc")
    assert by_scorer.status_code == 200
    assert (await ui.get(url + "?order=sideways")).status_code == 400


async def test_config_and_run_pages(ui: UiClient, finished: dict[str, str]) -> None:
    experiment = finished["experiment"]
    top = leaderboard_hashes((await ui.get(f"/ui/sweeps/{experiment}")).text)[0]
    config = await ui.get(f"/ui/sweeps/{experiment}/configs/{top}")
    assert f"Config #1 <code>{top[:8]}</code>" in config.text
    run_links = re.findall(r'href="/ui/runs/([0-9a-f-]{36})"', config.text)
    assert len(run_links) == 3
    escaped(config.text)

    echo = (await ui.get(f"/ui/sweeps/{experiment}?sort=tokens_out&order=desc")).text
    for digest in leaderboard_hashes(echo):
        html = (await ui.get(f"/ui/sweeps/{experiment}/configs/{digest}")).text
        if "mock:echo" in html and "Classify" in html:
            run_id = re.findall(r'href="/ui/runs/([0-9a-f-]{36})"', html)[0]
            break
    run = await ui.get(f"/ui/runs/{run_id}")
    assert run.status_code == 200
    assert "Prompt</div>" in run.text
    assert "Response</div>" in run.text
    assert "data-copy" in run.text
    assert "echo (simulated)" in run.text
    assert "tokens in" in run.text
    assert "accuracy" in run.text
    escaped(run.text)  # the echoed prompt holds the hostile text, as does the dataset row

    failed = await ui.get(f"/ui/runs/{finished['failed_run']}")
    assert "This run failed: scorer accuracy raised" in failed.text
    escaped(failed.text)


async def test_compare(ui: UiClient, finished: dict[str, str]) -> None:
    experiment = finished["experiment"]
    hashes = leaderboard_hashes((await ui.get(f"/ui/sweeps/{experiment}")).text)
    query = "&".join(f"config={h}" for h in hashes[:3])
    page = await ui.get(f"/ui/sweeps/{experiment}/compare?{query}")
    assert page.status_code == 200
    assert "3 configs side by side" in page.text
    assert "differ on" in page.text
    assert '<ins class="diff">' in page.text or '<del class="diff">' in page.text
    escaped(page.text)
    one = await ui.get(f"/ui/sweeps/{experiment}/compare?config={hashes[0]}")
    assert one.status_code == 400
    assert "Pick 2 to 4 configs" in one.text
    unknown = await ui.get(f"/ui/sweeps/{experiment}/compare?config={hashes[0]}&config=feed")
    assert unknown.status_code == 404


async def test_compare_takes_the_short_hashes_the_leaderboard_shows(
    ui: UiClient, finished: dict[str, str]
) -> None:
    experiment = finished["experiment"]
    hashes = leaderboard_hashes((await ui.get(f"/ui/sweeps/{experiment}")).text)
    short = "&".join(f"config={h[:8]}" for h in hashes[:2])
    full = "&".join(f"config={h}" for h in hashes[:2])

    page = await ui.get(f"/ui/sweeps/{experiment}/compare?{short}")
    same = await ui.get(f"/ui/sweeps/{experiment}/compare?{full}")
    twice = await ui.get(
        f"/ui/sweeps/{experiment}/compare?config={hashes[0][:8]}&config={hashes[0]}"
    )

    assert page.status_code == 200
    assert "2 configs side by side" in page.text
    assert page.text.count("<tr") == same.text.count("<tr")
    assert twice.status_code == 400
    assert "one config" in twice.text


async def test_exports_and_report(ui: UiClient, finished: dict[str, str]) -> None:
    base = f"/ui/sweeps/{finished['experiment']}"
    best = await ui.get(base + "/export/best")
    assert best.headers["content-type"] == "application/json"
    assert "attachment" in best.headers["content-disposition"]
    assert best.json()["experiment_name"] == DOCUMENT["name"]
    env = await ui.get(base + "/export/env")
    assert env.headers["content-type"].startswith("text/plain")
    assert "MODEL=" in env.text
    yaml_file = await ui.get(base + "/export/yaml")
    assert yaml_file.headers["content-type"].startswith("text/yaml")
    report = await ui.get(base + "/export/report")
    assert report.headers["content-type"].startswith("text/markdown")
    assert "# Experiment Report: triage <script>" in report.text

    page = await ui.get(base + "/report")
    assert "<h1>Experiment Report: triage" in page.text
    assert "<table>" in page.text
    escaped(page.text)  # raw HTML in names and config values stays text


async def test_promote_to_new_agent_then_existing(ui: UiClient, finished: dict[str, str]) -> None:
    base = f"/ui/sweeps/{finished['experiment']}"
    page = await ui.get(base)
    top = leaderboard_hashes(page.text)[0]
    assert f'value="{top}"' in page.text  # the leader is prefilled
    created = await ui.post(
        base + "/promote", {"config_hash": top[:8], "new_agent": "triage bot", "name": "best"}
    )
    assert created.status_code == 303, created.text
    assert re.fullmatch(
        r"/ui/agents/[0-9a-f-]{36}/variants/[0-9a-f-]{36}", created.headers["location"]
    )
    agent_id = created.headers["location"].split("/")[3]
    page = await ui.get(base)
    assert f'<option value="{agent_id}"' in page.text
    second = await ui.post(
        base + "/promote", {"config_hash": top, "agent_id": agent_id, "name": "second"}
    )
    assert second.headers["location"].startswith(f"/ui/agents/{agent_id}/variants/")


async def test_promote_to_new_agent_says_what_base_and_variant_hold(
    ui: UiClient, finished: dict[str, str]
) -> None:
    """The form's help text and the variant page tell the same story: the new agent's base is
    the promoted config, and the variant overrides those fields with the same values."""
    base = f"/ui/sweeps/{finished['experiment']}"
    page = (await ui.get(base)).text
    assert (
        "created with the promoted config as its base config, and the variant overrides "
        "those same fields with the same values"
    ) in page
    created = await ui.post(base + "/promote", {"new_agent": "triage bot", "name": "best"})
    assert created.status_code == 303, created.text
    variant = (await ui.get(created.headers["location"])).text
    text = " ".join(re.sub(r"<[^>]+>", " ", variant).split())
    same = "this variant (the same value as the base; kept if the base changes)"
    assert f"model_provider mock {same}" in text
    assert "(overrides the base)" not in text
    agent = (await ui.get(created.headers["location"].split("/variants/")[0])).text
    assert "base: " in agent


async def test_promote_errors_in_place(ui: UiClient, finished: dict[str, str]) -> None:
    base = f"/ui/sweeps/{finished['experiment']}"
    await ui.get(base)
    neither = await ui.post(base + "/promote", {"config_hash": "", "name": "kept name"})
    assert neither.status_code == 422
    assert "Choose an agent of the project, or name a new one" in neither.text
    assert 'value="kept name"' in neither.text
    unknown = await ui.post(base + "/promote", {"config_hash": "ffff", "new_agent": "x"})
    assert unknown.status_code == 422
    assert "No scored config" in unknown.text
    assert "<option value=" not in unknown.text.split('id="f-agent_id"')[1].split("</select>")[
        0
    ].replace('<option value="">', "")  # the refused promotion left no agent behind


async def test_csrf_refused(ui: UiClient, finished: dict[str, str]) -> None:
    experiment = finished["experiment"]
    for url, data in (
        (f"/ui/sweeps/{experiment}/start", {}),
        (f"/ui/sweeps/{experiment}/cancel", {}),
        (f"/ui/sweeps/{experiment}/promote", {"new_agent": "x"}),
        (f"/ui/projects/{finished['project']}/sweeps/new", {"document": "{}"}),
    ):
        response = await ui.post(url, data, csrf="")
        assert response.status_code == 403, url
    listing = await ui.get(f"/ui/projects/{finished['project']}/sweeps")
    assert listing.text.count('<td><a href="/ui/sweeps/') == 1  # no second one was created


async def test_another_user_gets_404(
    ui: UiClient, ui_other: UiClient, finished: dict[str, str]
) -> None:
    experiment = finished["experiment"]
    alice = leaderboard_hashes((await ui.get(f"/ui/sweeps/{experiment}")).text)
    urls = [
        f"/ui/projects/{finished['project']}/sweeps",
        f"/ui/projects/{finished['project']}/sweeps/new",
        f"/ui/sweeps/{experiment}",
        f"/ui/sweeps/{experiment}/configs/{alice[0]}",
        f"/ui/runs/{finished['failed_run']}",
        f"/ui/sweeps/{experiment}/compare?config={alice[0]}&config={alice[1]}",
        f"/ui/sweeps/{experiment}/report",
        *(f"/ui/sweeps/{experiment}/export/{kind}" for kind in ("best", "env", "yaml", "report")),
    ]
    await ui_other.get("/ui/")
    for url in urls:
        response = await ui_other.get(url)
        assert response.status_code == 404, url
        assert "not yours to see" in response.text
        assert "triage" not in response.text
    for action, data in (
        ("start", {}),
        ("cancel", {}),
        ("promote", {"config_hash": alice[0], "new_agent": "stolen"}),
    ):
        response = await ui_other.post(f"/ui/sweeps/{experiment}/{action}", data)
        assert response.status_code == 404, action
    page = await ui.get(f"/ui/sweeps/{experiment}")
    assert "stolen" not in page.text


async def test_unknown_ids(ui: UiClient, finished: dict[str, str]) -> None:
    missing = uuid.uuid4()
    for url in (
        f"/ui/sweeps/{missing}",
        f"/ui/runs/{missing}",
        f"/ui/projects/{missing}/sweeps",
        f"/ui/sweeps/{finished['experiment']}/configs/nope",
        f"/ui/sweeps/{missing}/export/best",
        "/ui/sweeps/not-a-uuid",
        f"/ui/sweeps/{finished['experiment']}/export/zip",
    ):
        assert (await ui.get(url)).status_code == 404, url


async def test_pages_paginate_and_statements_do_not_grow(
    ui: UiClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both sizes' runs fit one page of the summary's read, which only grows by a statement
    # per SUMMARY_PAGE runs: what must not grow is a statement per config or row.
    monkeypatch.setattr(sweeps_service, "SUMMARY_PAGE", 10_000)
    project_id = uuid.UUID(await make_project(ui))
    counts: dict[int, dict[str, int]] = {}
    for size in (5, 60):
        experiment_id, hashes, _ = await seed_experiment(
            app.state.sessionmaker, project_id, configs=size, rows=size
        )
        pages = {
            "leaderboard": f"/ui/sweeps/{experiment_id}",
            "compare": f"/ui/sweeps/{experiment_id}/compare?config={hashes[0]}&config={hashes[1]}",
            "config": f"/ui/sweeps/{experiment_id}/configs/{hashes[0]}",
        }
        counts[size] = {}
        for name, url in pages.items():
            with statements(app) as seen:
                response = await ui.get(url)
            assert response.status_code == 200, response.text
            counts[size][name] = len(seen)
        if size == 60:
            first = (await ui.get(pages["leaderboard"])).text
            assert len(leaderboard_hashes(first)) == 50
            assert "1–50 of 60" in first
            second = (await ui.get(pages["leaderboard"] + "?page=2")).text
            assert leaderboard_hashes(second) == hashes[50:]
            compare = (await ui.get(pages["compare"] + "&page=3")).text
            assert "41–60 of 60" in compare
            config = (await ui.get(pages["config"] + "?page=2")).text
            assert "51–60 of 60" in config
    assert counts[5] == counts[60], counts


async def test_compare_shows_the_paired_statistics_the_api_gives(
    ui: UiClient, app: FastAPI
) -> None:
    doc = racing({"good": 0.95, "bad": 0.3, "alike": 0.94}, n_rows=60)
    del doc["search"]
    doc["name"] = f"paired {XSS}"
    project_id = await make_project(ui)
    experiment_id = await create_sweep(ui, project_id, doc)
    await run_sweep(ui, app, experiment_id)
    hashes = leaderboard_hashes((await ui.get(f"/ui/sweeps/{experiment_id}")).text)
    login = await ui.http.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    page = await ui.get(
        f"/ui/sweeps/{experiment_id}/compare?config={hashes[0]}&config={hashes[1]}"
        f"&config={hashes[2]}"
    )
    table = page.text[page.text.index('id="paired-stats"') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)[1:]

    assert page.status_code == 200
    assert len(rows) == 2
    for digest, row in zip(hashes[1:], rows, strict=True):
        api = await ui.http.get(
            f"/api/experiments/{experiment_id}/compare?a={hashes[0]}&b={digest}&limit=0",
            headers=headers,
        )
        paired = api.json()["paired"]
        assert digest[:8] in row
        assert f"{paired['diff']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]" in row
        assert html.escape(verdict.p_text(paired["p_value"])) in row
        assert f"{paired['losses']} / {paired['wins']}" in row
        if paired["significant"]:
            assert ">worse</span>" in row
            assert "rows would separate them" not in row
        else:
            assert ">tied</span>" in row
            expected = f"about {paired['rows_needed']:,} rows would separate them"
            assert (expected if paired["rows_needed"] else "no number of rows") in row
    assert ">worse</span>" in rows[1]  # mock:bad, far behind
    assert ">tied</span>" in rows[0]  # mock:alike, as good as the leader
    escaped(page.text)
