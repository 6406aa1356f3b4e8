"""The training pages over HTTP: the models and runs, a run's answer, curves and checkpoints,
the polled fragment, sampling through the form (on the tiny model), escaping, CSRF, ownership
and a long run's curve kept small."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.auth.models import User
from promptlooper.auth.principal import Principal
from promptlooper.db.base import utcnow
from promptlooper.training import service
from promptlooper.training.models import TrainingCheckpoint, TrainingStep
from promptlooper.training.schemas import (
    PromptSamples,
    RunCreate,
    SampleRequest,
    SampleResult,
    Sequence,
)
from tests.training.conftest import backend, trained_app  # noqa: F401  (fixtures)
from tests.web.conftest import UiClient

XSS = '<script>alert(1)</script>" onmouseover="evil()'


def escaped(html: str) -> None:
    assert "<script>alert(1)" not in html
    assert '" onmouseover=' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def _principal(sessionmaker: async_sessionmaker[AsyncSession], username: str) -> Principal:
    async with sessionmaker() as session:
        user = await session.scalar(select(User).where(User.username == username))
        assert user is not None
        return Principal(user.id, user.username, is_admin=user.is_admin, method="local")


async def seed_run(
    app: FastAPI,
    username: str = "alice",
    *,
    name: str = "triage sft",
    losses: list[float] | None = None,
    age: timedelta = timedelta(hours=1),
    checkpoint: str | None = None,
) -> uuid.UUID:
    """A run on tiny-test with a logged step per loss (as the step log writes them), the last
    one ``age`` ago, and optionally a saved adapter checkpoint row."""
    sessionmaker = app.state.sessionmaker
    owner = await _principal(sessionmaker, username)
    registry = app.state.trainer.registry
    async with sessionmaker() as session:
        run = await service.create_run(
            session, owner, registry, RunCreate(base_model="tiny-test", name=name)
        )
        when = utcnow() - age
        for index, loss in enumerate(losses or []):
            session.add(
                TrainingStep(
                    run_id=run.id,
                    step=index + 1,
                    loss=loss,
                    tokens=100 + index,
                    grad_norm=1.5 + index / 1000,
                    learning_rate=1e-4,
                    created_at=when,
                )
            )
        run.step = len(losses or [])
        if checkpoint:
            session.add(
                TrainingCheckpoint(
                    run_id=run.id,
                    name=checkpoint,
                    kind="adapter",
                    step=run.step,
                    path=f"/tmp/{run.id}/{checkpoint}",
                )
            )
        await session.commit()
        return run.id


def charts(html: str) -> dict[str, dict]:
    """The chart JSON blocks of a page, by id."""
    blocks = re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', html, re.S)
    return {chart_id: json.loads(body) for chart_id, body in blocks}


async def test_empty_list_teaches(ui: UiClient) -> None:
    response = await ui.get("/ui/training")
    assert response.status_code == 200
    assert "No training runs yet" in response.text
    assert "promptlooper train sft --model tiny-test" in response.text
    assert "<code>tiny-test</code>" in response.text  # the registry's models


async def test_list_shows_runs_newest_first_with_loss_and_status(
    ui: UiClient, app: FastAPI
) -> None:
    older = await seed_run(app, name="older", losses=[2.5, 2.0])
    newer = await seed_run(app, name="newer", losses=[3.0, 2.0, 1.25], age=timedelta(seconds=5))
    html = (await ui.get("/ui/training")).text
    assert html.index(str(newer)) < html.index(str(older))
    row = html[html.index(str(newer)) :].split("</tr>")[0]
    assert ">3</td>" in row
    assert "1.250" in row
    assert "training" in row
    row = html[html.index(str(older)) :].split("</tr>")[0]
    assert "2.000" in row
    assert "idle" in row
    by_step = (await ui.get("/ui/training?sort=step&order=asc")).text
    assert by_step.index(str(older)) < by_step.index(str(newer))
    assert 'aria-sort="ascending"' in by_step
    new = await seed_run(app, name="new")  # no step yet: no loss, status new
    for sort, order, expected in (
        ("loss", "asc", [newer, older, new]),  # a run without a loss is last either way
        ("loss", "desc", [older, newer, new]),
        ("status", "desc", [newer, older, new]),  # training, idle, new
        ("status", "asc", [new, older, newer]),
    ):
        sorted_page = (await ui.get(f"/ui/training?sort={sort}&order={order}")).text
        shown = sorted(expected, key=lambda run_id: sorted_page.index(str(run_id)))
        assert shown == expected, (sort, order)
    assert 'href="?sort=loss&amp;order=desc"' in html  # the headers sort, as the step's does
    assert 'href="?sort=status&amp;order=desc"' in html
    for bad in (
        "/ui/training?sort=evil",
        "/ui/training?page=0",
        f"/ui/training/runs/{newer}?scale=x",
    ):
        refused = await ui.get(bad)
        assert refused.status_code == 400, bad
        assert "Bad request" in refused.text


async def test_list_paginates(ui: UiClient, app: FastAPI) -> None:
    for index in range(27):
        await seed_run(app, name=f"run {index}")
    first = (await ui.get("/ui/training")).text
    assert "1–25 of 27" in first
    second = (await ui.get("/ui/training?page=2")).text
    assert "26–27 of 27" in second
    assert second.count("/ui/training/runs/") == 2


async def test_run_page_answers_first_with_curves_and_checkpoints(
    ui: UiClient, app: FastAPI
) -> None:
    run_id = await seed_run(app, losses=[2.24, 2.1, 1.9, 1.83], checkpoint="tuned")
    response = await ui.get(f"/ui/training/runs/{run_id}")
    assert response.status_code == 200
    html = response.text
    assert re.search(r"Step 4, loss 1\.830\s+\(↓ 0\.410 since step 1\),\s+learning", html)
    found = charts(html)
    assert set(found) == {
        "curve-loss",
        "curve-grad_norm",
        "curve-learning_rate",
        "curve-tokens",
    }
    assert found["curve-loss"]["x"] == [1, 2, 3, 4]
    assert found["curve-loss"]["series"][0]["values"] == [2.24, 2.1, 1.9, 1.83]
    assert found["curve-tokens"]["series"][0]["values"] == [100, 101, 102, 103]
    assert 'data-smooth-for="curve-loss curve-grad_norm"' in html
    assert f"local:{run_id}@tuned" in html
    assert "data-copy" in html
    assert "hx-trigger" not in html  # idle: nothing polls
    log = (await ui.get(f"/ui/training/runs/{run_id}?scale=log")).text
    assert charts(log)["curve-loss"]["log"] is True

    # The smoothing is part of the view: in the URL, shown beside its slider, carried along.
    smoothed = (await ui.get(f"/ui/training/runs/{run_id}?scale=log&smooth=0.6")).text
    assert re.search(r'name="smooth"[^>]*value="0.6"', smoothed)
    assert '<output for="smooth" data-smooth-value>0.60</output>' in smoothed
    assert f'href="/ui/training/runs/{run_id}?smooth=0.6" data-keeps-smooth>linear' in smoothed
    assert "/sample?scale=log&amp;smooth=0.6#sample" in smoothed
    assert (await ui.get(f"/ui/training/runs/{run_id}?smooth=2")).status_code == 400


async def test_rising_loss_and_new_run(ui: UiClient, app: FastAPI) -> None:
    rising = await seed_run(app, losses=[1.0, 1.5, 2.0])
    assert "loss rising" in (await ui.get(f"/ui/training/runs/{rising}")).text
    new = await seed_run(app)
    html = (await ui.get(f"/ui/training/runs/{new}")).text
    assert "No steps yet" in html
    assert "No checkpoints yet" in html
    assert f'hx-get="/ui/training/runs/{new}/curves' in html  # waits for a first step


async def test_polling_fragment_while_training(ui: UiClient, app: FastAPI) -> None:
    run_id = await seed_run(app, losses=[2.0, 1.0], age=timedelta(seconds=1))
    page_html = (await ui.get(f"/ui/training/runs/{run_id}")).text
    assert f'hx-get="/ui/training/runs/{run_id}/curves?scale=linear"' in page_html
    fragment = await ui.get(f"/ui/training/runs/{run_id}/curves", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="curves"')
    assert "<html" not in fragment.text
    assert 'hx-trigger="every 3s"' in fragment.text
    assert charts(fragment.text)["curve-loss"]["x"] == [1, 2]
    idle = await seed_run(app, losses=[2.0, 1.0])
    stopped = await ui.get(f"/ui/training/runs/{idle}/curves", headers={"HX-Request": "true"})
    assert "hx-trigger" not in stopped.text  # the swap that ends the polling


async def test_long_run_curve_is_downsampled_under_budget(ui: UiClient, app: FastAPI) -> None:
    losses = [3.0 * math.exp(-i / 3000) + 0.01 * math.sin(i) for i in range(10_000)]
    losses[4321] = 9.0  # a spike survives
    run_id = await seed_run(app, losses=losses)
    response = await ui.get(f"/ui/training/runs/{run_id}")
    curves = sum(
        len(m)
        for m in re.findall(r'<script type="application/json".*?</script>', response.text, re.S)
    )
    assert curves < 300_000
    assert len(response.content) < 300_000
    loss = charts(response.text)["curve-loss"]
    assert len(loss["x"]) <= 1001
    assert loss["x"][-1] == 10_000
    assert 9.0 in loss["series"][0]["values"]
    assert "10,000 steps drawn as about 1,000 points" in response.text


async def test_another_users_run_is_a_404(ui: UiClient, ui_other: UiClient, app: FastAPI) -> None:
    run_id = await seed_run(app, losses=[1.0])
    for url in (f"/ui/training/runs/{run_id}", f"/ui/training/runs/{run_id}/curves"):
        response = await ui_other.get(url)
        assert response.status_code == 404
        assert "not yours to see" in response.text
    await ui_other.get("/ui/training")
    refused = await ui_other.post(f"/ui/training/runs/{run_id}/sample", {"prompt": "hi"})
    assert refused.status_code == 404
    assert str(run_id) not in (await ui_other.get("/ui/training")).text
    assert (await ui.get(f"/ui/training/runs/{uuid.uuid4()}")).status_code == 404


async def test_user_text_is_escaped(ui: UiClient, app: FastAPI) -> None:
    run_id = await seed_run(app, name=f"run {XSS}", losses=[1.0])
    escaped((await ui.get("/ui/training")).text)
    escaped((await ui.get(f"/ui/training/runs/{run_id}")).text)
    await ui.get(f"/ui/training/runs/{run_id}")
    response = await ui.post(
        f"/ui/training/runs/{run_id}/sample", {"prompt": XSS, "max_tokens": "nope"}
    )
    assert response.status_code == 422
    escaped(response.text)  # what was typed, shown again


async def test_sample_form_refuses_bad_input_in_place(ui: UiClient, app: FastAPI) -> None:
    run_id = await seed_run(app, losses=[1.0])
    page = (await ui.get(f"/ui/training/runs/{run_id}")).text
    # The browser checks the limits first: they reach the inputs as attributes.
    assert re.search(r'name="max_tokens"[^>]* min="1" max="4096"', page)
    assert re.search(r'name="seed"[^>]* min="0"', page)
    response = await ui.post(
        f"/ui/training/runs/{run_id}/sample",
        {"prompt": "", "max_tokens": "0", "temperature": "hot", "top_p": "2", "seed": "-1"},
    )
    assert response.status_code == 422
    html = response.text
    for field in ("prompt", "max_tokens", "temperature", "top_p", "seed"):
        assert f'id="e-{field}"' in html, field
    assert 'value="hot"' in html  # what was typed stays
    assert "Write a prompt" in html

    # A format the form does not offer is refused beside its choice, not sent as text.
    evil = await ui.post(
        f"/ui/training/runs/{run_id}/sample", {"prompt": "Hello", "format": "evil"}
    )
    assert evil.status_code == 422
    assert re.search(r'id="e-format">Send the prompt as plain text or as a chat', evil.text)
    assert "sample-answer" not in evil.text


async def test_sample_needs_the_csrf_token(ui: UiClient, app: FastAPI) -> None:
    run_id = await seed_run(app, losses=[1.0])
    response = await ui.post(f"/ui/training/runs/{run_id}/sample", {"prompt": "hi"}, csrf="")
    assert response.status_code == 403
    forged = await ui.post(f"/ui/training/runs/{run_id}/sample", {"prompt": "hi"}, csrf="x" * 64)
    assert forged.status_code == 403


@pytest.mark.usefixtures("trained_app")
async def test_sample_answers_verbatim_with_its_stop_reason(ui: UiClient, app: FastAPI) -> None:
    run_id = await seed_run(app)
    await ui.get(f"/ui/training/runs/{run_id}")
    response = await ui.post(
        f"/ui/training/runs/{run_id}/sample",
        {"prompt": "The capital", "max_tokens": "5", "temperature": "0", "seed": "1"},
    )
    assert response.status_code == 200, response.text
    assert 'Stop reason: <strong class="stop-reason">' in response.text
    assert re.search(r'class="stop-reason">(stop|length)</strong>', response.text)
    assert "Answer" in response.text
    chat = await ui.post(
        f"/ui/training/runs/{run_id}/sample",
        {
            "prompt": XSS,
            "system": "Be brief.",
            "format": "chat",
            "max_tokens": "3",
            "stop": "\n",
            "temperature": "0",
        },
    )
    assert chat.status_code == 200, chat.text
    escaped(chat.text)
    assert 'value="chat" checked' in chat.text


async def test_sampled_text_is_shown_verbatim_and_escaped(
    ui: UiClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = await seed_run(app, losses=[1.0])
    answer = f"  line one\n{XSS}\n\tindented"
    sent: list[SampleRequest] = []

    async def call(_principal: object, _run: object, operation: str, body: SampleRequest) -> object:
        assert operation == "sample"
        sent.append(body)
        sequence = Sequence(
            text=answer, tokens=[1, 2, 3], logprobs=[-1.0] * 3, stop_reason="length"
        )
        return SampleResult(
            samples=[PromptSamples(prompt_tokens=[5], sequences=[sequence])], elapsed_ms=12.5
        )

    monkeypatch.setattr(app.state.trainer, "call", call)
    await ui.get(f"/ui/training/runs/{run_id}")
    response = await ui.post(
        f"/ui/training/runs/{run_id}/sample",
        {"prompt": "hi", "max_tokens": "3", "stop": "END\n\nSTOP", "top_p": "0.9", "seed": "7"},
    )
    assert response.status_code == 200, response.text
    escaped(response.text)
    assert "  line one\n" in response.text  # whitespace kept in the verbatim block
    assert 'class="stop-reason">length</strong>' in response.text
    assert "reached the limit of 3 tokens" in response.text
    assert sent[0].stop == ["END", "STOP"]
    assert (sent[0].max_tokens, sent[0].top_p, sent[0].seed) == (3, 0.9, 7)
