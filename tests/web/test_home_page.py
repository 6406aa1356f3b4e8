"""The home page over HTTP: the sentence that says what needs attention, each section with its
data and its links, the empty states, what a non-admin and another user do not see, escaping,
and a statement count that does not grow with the number of projects, sweeps, agents,
experiments or runs."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.auth import service as auth
from promptlooper.online import service as online
from promptlooper.online.models import ExperimentTotals, VariantTotals
from promptlooper.online.schemas import ExperimentCreate
from promptlooper.online.tallies import TOTALS
from promptlooper.sweeps.models import Experiment
from promptlooper.training.models import TrainingRun, TrainingStep
from promptlooper.variants.service import existing_variant_ids
from promptlooper.web.training import EXAMPLE_COMMAND
from tests.web.conftest import UiClient, statements
from tests.web.seeding import seed_experiment

EVIL = '<script>alert(1)</script>" onmouseover="x'


def _text(page: str) -> str:
    """The page's text with tags dropped and whitespace collapsed, entities decoded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _escaped(page: str) -> None:
    assert "<script>alert(1)" not in page
    assert '" onmouseover=' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def _project(ui: UiClient, name: str) -> uuid.UUID:
    await ui.get("/ui/")
    response = await ui.post("/ui/projects", {"name": name})
    assert response.status_code == 303, response.text
    return uuid.UUID(response.headers["location"].rsplit("/", 1)[-1])


async def _agent(ui: UiClient, project_id: uuid.UUID, name: str) -> str:
    await ui.get(f"/ui/projects/{project_id}/agents/new")
    response = await ui.post(
        f"/ui/projects/{project_id}/agents/new",
        {"name": name, "model_provider": "openai", "model_name": "gpt-4o-mini"},
    )
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


async def _active_variant(ui: UiClient, agent_id: str, name: str) -> str:
    await ui.get(f"/ui/agents/{agent_id}/variants/new")
    response = await ui.post(
        f"/ui/agents/{agent_id}/variants/new", {"name": name, "temperature": "0.1"}
    )
    assert response.status_code == 303, response.text
    variant_id = response.headers["location"].rsplit("/", 1)[-1]
    await ui.get(f"/ui/agents/{agent_id}")
    activated = await ui.post(
        f"/ui/agents/{agent_id}/variants/{variant_id}/activate", {"reason": ""}
    )
    assert activated.status_code == 303, activated.text
    return variant_id


async def _running(sessionmaker: async_sessionmaker[AsyncSession], experiment_id: uuid.UUID):
    """Mark a seeded sweep as running, with a live lease."""
    async with sessionmaker() as session:
        await session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id)
            .values(status="running", lease_expires_at=datetime.now(UTC) + timedelta(hours=1))
        )
        await session.commit()


async def _online(
    sessionmaker: async_sessionmaker[AsyncSession],
    key: str,
    name: str,
    exposed: tuple[int, int],
    sessions: int,
) -> None:
    """A running two-arm online experiment whose running totals say ``exposed`` per arm."""
    body = ExperimentCreate.model_validate(
        {
            "experiment_key": key,
            "name": name,
            "cookie_name": f"exp_{key}",
            "variants": [
                {"variant_key": "control", "allocation": 50, "is_control": True},
                {"variant_key": "treatment", "allocation": 50},
            ],
        }
    )
    async with sessionmaker() as session:
        await online.create_experiment(session, body, existing_variant_ids)
        for arm, count in zip(("control", "treatment"), exposed, strict=True):
            values: dict[str, Any] = dict.fromkeys(TOTALS, 0)
            values |= {"exposed": count, "unique_sessions": count, "impressions": count}
            await session.execute(
                insert(VariantTotals).values(experiment_key=key, variant_key=arm, **values)
            )
        await session.execute(
            insert(ExperimentTotals).values(experiment_key=key, sessions=sessions, multiple=0)
        )
        await session.commit()


async def _training_run(
    sessionmaker: async_sessionmaker[AsyncSession], username: str, name: str, losses: list[float]
) -> uuid.UUID:
    async with sessionmaker() as session:
        user = await auth.get_user_by_username(session, username)
        assert user is not None
        run = TrainingRun(
            owner_id=user.id,
            name=name,
            base_model="tiny-test",
            lora={"rank": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": ["q_proj"]},
            step=len(losses),
        )
        session.add(run)
        await session.flush()
        for step, loss in enumerate(losses, start=1):
            session.add(
                TrainingStep(
                    run_id=run.id,
                    step=step,
                    loss=loss,
                    tokens=100,
                    grad_norm=1.0,
                    learning_rate=1e-4,
                )
            )
        await session.commit()
        return run.id


async def test_empty_home_teaches_each_section(ui: UiClient) -> None:
    page = await ui.get("/ui/")
    assert page.status_code == 200
    text = _text(page.text)
    assert "Home Nothing needs attention" in text  # the answer comes first
    assert "Nothing needs attention: no sweep is running or failed." in text
    assert "No projects yet." in text
    assert "promptlooper sweep run examples/ticket-triage/sweep.yaml" in text
    assert "No training runs yet." in text
    assert EXAMPLE_COMMAND in text  # the training page's own command, which runs as shown
    assert 'action="/ui/projects"' in page.text  # the new-project form stays

    project_id = await _project(ui, "Empty one")
    text = _text((await ui.get("/ui/")).text)
    assert "No sweeps here yet." in text
    assert "--project Empty one" in text
    assert "No agents yet" in text
    assert f'href="/ui/projects/{project_id}/agents/new"' in (await ui.get("/ui/")).text


async def test_projects_show_latest_sweeps_and_what_each_agent_serves(
    ui: UiClient, app: FastAPI
) -> None:
    sessionmaker = app.state.sessionmaker
    project_id = await _project(ui, f"Support {EVIL}")
    old, _, _ = await seed_experiment(sessionmaker, project_id, configs=2, name="oldest sweep")
    seeded = [
        (
            await seed_experiment(
                sessionmaker, project_id, configs=4, rows=2, name=f"sweep {index} {EVIL}"
            )
        )[0]
        for index in range(3)
    ]
    middle, newest = seeded[1], seeded[2]
    await _running(sessionmaker, newest)
    agent_id = await _agent(ui, project_id, f"Triage bot {EVIL}")
    variant_id = await _active_variant(ui, agent_id, f"careful {EVIL}")
    plain_agent = await _agent(ui, project_id, "Plain bot")

    page = await ui.get("/ui/")
    assert page.status_code == 200
    _escaped(page.text)
    text = _text(page.text)
    assert "Needs attention: 1 sweep running." in text
    assert f"Support {EVIL}" in text
    assert "latest 3 of 4" in text
    assert "oldest sweep" not in text  # only the latest three
    assert f'href="/ui/sweeps/{newest}"' in page.text
    assert f'href="/ui/sweeps/{old}"' not in page.text
    # status, progress and the leader's score (0.7 × 1.0 + 0.3 × 0.5)
    assert "running" in text
    assert "8 / 8 runs" in text
    assert "0.850" in text
    assert f'href="/ui/agents/{agent_id}"' in page.text
    assert f'href="/ui/agents/{agent_id}/variants/{variant_id}"' in page.text
    assert f"active careful {EVIL} (revision 1)" in text
    assert f'href="/ui/agents/{plain_agent}"' in page.text
    assert "Plain bot base config" in text
    assert "banner" not in page.text  # a running sweep is news, not a warning

    async with sessionmaker() as session:
        await session.execute(
            update(Experiment).where(Experiment.id == middle).values(status="failed")
        )
        await session.commit()
    page = await ui.get("/ui/")
    assert "Needs attention: 1 sweep running; 1 sweep failed." in _text(page.text)
    assert '<p class="banner warn" role="alert">' in page.text


async def test_admin_sees_running_experiments_with_their_health(
    ui_admin: UiClient, app: FastAPI
) -> None:
    sessionmaker = app.state.sessionmaker
    empty = _text((await ui_admin.get("/ui/")).text)
    assert "No online experiment is running." in empty

    await _online(sessionmaker, "skewed", f"Hero {EVIL}", (2_531, 2_281), 4_812)
    await _online(sessionmaker, "young", "Pricing CTA", (40, 38), 78)
    await _online(sessionmaker, "ready", "Checkout copy", (500, 510), 1_010)
    await _online(sessionmaker, "stopped_one", "Stopped test", (10, 10), 20)
    await _online(sessionmaker, "fresh", "Fresh test", (0, 0), 0)
    async with sessionmaker() as session:
        await online.set_status(session, "stopped_one", "stopped")
        await session.commit()

    page = await ui_admin.get("/ui/")
    assert page.status_code == 200
    _escaped(page.text)
    text = _text(page.text)
    assert f"sample-ratio mismatch in Hero {EVIL}: do not trust its results" in text
    assert '<p class="banner bad" role="alert">Needs attention: sample-ratio mismatch' in page.text
    assert "⚠ 2 variants · 4,812 sessions · SRM p=0.0003 — do not trust" in text
    assert "2 variants · 78 sessions · healthy · needs 62 more sessions per arm" in text
    assert "✓ 2 variants · 1,010 sessions · healthy · enough data" in text
    assert "2 variants · 0 sessions · no data yet · needs 100 sessions per arm" in text
    assert "Stopped test" not in text
    for key in ("skewed", "young", "ready", "fresh"):
        assert f'href="/ui/online/{key}"' in page.text


async def test_non_admin_sees_no_experiments_section(ui: UiClient, app: FastAPI) -> None:
    await _online(app.state.sessionmaker, "skewed", "Hero test", (2_600, 2_212), 4_812)
    page = await ui.get("/ui/")
    assert page.status_code == 200
    assert "online experiments" not in page.text
    assert "Hero test" not in page.text
    assert "/ui/online/" not in page.text
    assert "sample-ratio" not in page.text


async def test_latest_training_runs_with_step_and_loss(ui: UiClient, app: FastAPI) -> None:
    sessionmaker = app.state.sessionmaker
    run_ids = [
        await _training_run(sessionmaker, "alice", f"run {index} {EVIL}", [2.5, 1.25, 0.5 + index])
        for index in range(6)
    ]
    fresh = await _training_run(sessionmaker, "alice", "not begun", [])
    page = await ui.get("/ui/")
    _escaped(page.text)
    text = _text(page.text)
    assert "The latest 5 of 7" in text
    assert f'href="/ui/training/runs/{fresh}"' in page.text
    assert f'href="/ui/training/runs/{run_ids[-1]}"' in page.text
    assert f'href="/ui/training/runs/{run_ids[0]}"' not in page.text  # the oldest, past five
    assert f"run 5 {EVIL} tiny-test training 3 5.500 " in text  # 3 decimals, as on Training
    assert "not begun tiny-test new 0 –" in text


async def test_another_users_projects_and_runs_are_not_shown(
    ui: UiClient, ui_other: UiClient, app: FastAPI
) -> None:
    sessionmaker = app.state.sessionmaker
    theirs = await _project(ui_other, "Mallory's project")
    await seed_experiment(sessionmaker, theirs, configs=2, name="mallory sweep")
    await _agent(ui_other, theirs, "Mallory bot")
    await _training_run(sessionmaker, "mallory", "mallory run", [1.0])
    await _project(ui, "Alice's project")

    text = _text((await ui.get("/ui/")).text)
    assert "Alice's project" in text
    for hidden in ("Mallory's project", "mallory sweep", "Mallory bot", "mallory run"):
        assert hidden not in text


async def test_new_project_form_still_refuses_bad_input(ui: UiClient) -> None:
    await ui.get("/ui/")
    response = await ui.post("/ui/projects", {"name": ""})
    assert response.status_code == 422
    assert "No projects yet." in response.text
    refused = await ui.post("/ui/projects", {"name": "no token"}, csrf="")
    assert refused.status_code == 403
    assert "no token" not in (await ui.get("/ui/")).text


async def test_statements_do_not_grow_with_what_is_listed(ui_admin: UiClient, app: FastAPI) -> None:
    sessionmaker = app.state.sessionmaker
    counts = []
    for size in (1, 4):
        for index in range(size):
            project_id = await _project(ui_admin, f"p{size}-{index}")
            for _ in range(size):
                await seed_experiment(sessionmaker, project_id, configs=size, rows=2)
            agent_id = await _agent(ui_admin, project_id, f"bot {size}-{index}")
            await _active_variant(ui_admin, agent_id, "v")
            await _online(sessionmaker, f"exp_{size}_{index}", f"E {size} {index}", (50, 50), 100)
            await _training_run(sessionmaker, "root-admin", f"run {size}-{index}", [1.0, 0.5])
        with statements(app) as seen:
            response = await ui_admin.get("/ui/")
        assert response.status_code == 200
        counts.append(len(seen))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 17, counts  # one of them reads the traffic shares bandits changed
