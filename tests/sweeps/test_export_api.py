"""Seed 000's export scenarios: best config as JSON, .env and YAML, and the markdown report."""

from __future__ import annotations

import io
import subprocess
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import yaml

from promptlooper.sweeps.export import flatten, render_yaml
from promptlooper.sweeps.models import Experiment, Run, Score
from tests.factories import make_user

CONFIGS = [
    {"model": "gpt-4", "temperature": 0.1},
    {"model": "gpt-4", "temperature": 0.5},
    {"model": "gpt-3.5", "temperature": 0.9},
]
SCORES = [
    [("accuracy", 0.95), ("fluency", 0.80)],
    [("accuracy", 0.85), ("fluency", 0.90)],
    [("accuracy", 0.70), ("fluency", 0.60)],
]


@pytest.fixture
async def experiment(sessionmaker, client, bootstrap_headers) -> Experiment:
    """The seed's experiment, owned by the bootstrap admin like the seed's admin user."""
    me = (await client.get("/api/auth/me", headers=bootstrap_headers)).json()
    project = (
        await client.post("/api/projects", json={"name": "Test Project"}, headers=bootstrap_headers)
    ).json()
    async with sessionmaker() as session:
        exp = Experiment(
            project_id=uuid.UUID(project["id"]),
            name="Test Experiment",
            description="An experiment for testing exports",
            spec={},
            parameter_space={"temperature": [0.1, 0.5, 0.9], "model": ["gpt-4", "gpt-3.5"]},
            scoring_config={"weights": {"accuracy": 0.7, "fluency": 0.3}},
            status="completed",
        )
        session.add(exp)
        await session.commit()
    assert me["is_admin"]
    return exp


@pytest.fixture
async def completed_runs(sessionmaker, experiment) -> list[Run]:
    runs = []
    async with sessionmaker() as session:
        for i, (config, scores) in enumerate(zip(CONFIGS, SCORES, strict=True)):
            run = Run(
                experiment_id=experiment.id,
                config=config,
                parameters=config,
                config_hash=f"hash_{i:03d}",
                status="completed",
                duration_ms=1000 + i * 500,
                tokens_in=100 + i * 50,
                tokens_out=200 + i * 100,
                started_at=datetime.now(UTC),
                completed_at=datetime.now(UTC),
            )
            session.add(run)
            await session.flush()
            session.add_all(Score(run_id=run.id, scorer_name=n, value=v) for n, v in scores)
            runs.append(run)
        await session.commit()
    return runs


def url(experiment: Experiment, kind: str) -> str:
    return f"/api/export/experiments/{experiment.id}/{kind}"


async def test_best_is_the_highest_weighted_config(
    client: httpx.AsyncClient, bootstrap_headers, experiment, completed_runs
):
    response = await client.get(url(experiment, "best"), headers=bootstrap_headers)

    assert response.status_code == 200
    data = response.json()
    assert data["experiment_name"] == "Test Experiment"
    assert data["config"] == {"model": "gpt-4", "temperature": 0.1}
    # (0.95 * 0.7 + 0.80 * 0.3) / 1.0
    assert data["weighted_score"] == pytest.approx(0.905)
    assert data["run_id"] == str(completed_runs[0].id)
    assert data["config_hash"] == "hash_000"
    # One row each: a point, and nothing to tell whether #1 is really ahead of #2.
    interval = data["score_interval"]
    assert (interval["low"], interval["high"]) == pytest.approx((0.905, 0.905))
    assert (interval["rows"], interval["method"]) == (1, "t")
    assert (data["significantly_better"], data["runner_up"]) == (None, None)
    assert datetime.fromisoformat(data["exported_at"]).tzinfo is not None


async def test_env_export(client: httpx.AsyncClient, bootstrap_headers, experiment, completed_runs):
    response = await client.get(url(experiment, "env"), headers=bootstrap_headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    lines = response.text.splitlines()
    assert lines[0].startswith("# PromptLooper")
    assert "Test Experiment" in response.text
    assert "# Weighted score: 0.9050" in lines
    assert "MODEL=gpt-4" in lines
    assert "TEMPERATURE=0.1" in lines


async def test_yaml_export(
    client: httpx.AsyncClient, bootstrap_headers, experiment, completed_runs
):
    response = await client.get(url(experiment, "yaml"), headers=bootstrap_headers)

    assert response.status_code == 200
    assert "text/yaml" in response.headers["content-type"]
    assert "experiment_name: Test Experiment" in response.text
    assert "config:" in response.text
    assert "# PromptLooper" in response.text
    assert "# Weighted score" in response.text
    parsed = yaml.safe_load(response.text)
    assert parsed["config"] == {"model": "gpt-4", "temperature": 0.1}


async def test_report(client: httpx.AsyncClient, bootstrap_headers, experiment, completed_runs):
    response = await client.get(url(experiment, "report"), headers=bootstrap_headers)

    assert response.status_code == 200
    assert "text/markdown" in response.headers["content-type"]
    text = response.text
    for expected in [
        "# Experiment Report: Test Experiment",
        "An experiment for testing exports",
        "## Run Summary",
        "| Total runs | 3 |",
        "| Completed | 3 |",
        "## Configuration Space",
        "| temperature | 0.1, 0.5, 0.9 |",
        "## Top 5 Configurations",
        "Weighted Score",
        "## Score Distributions",
        "| accuracy | 0.7 |",
        "| fluency | 0.3 |",
        "## Token Usage",
        "| Total tokens in | 450 |",
        "| Total tokens out | 900 |",
        "## Timing",
        "| Fastest run | 1000.0 ms |",
        "| Slowest run | 2000.0 ms |",
    ]:
        assert expected in text, expected
    top_rows = [line for line in text.splitlines() if line.startswith("| 1 | 0.9050")]
    assert len(top_rows) == 1


async def test_report_top_n_and_failed_runs(
    client: httpx.AsyncClient, bootstrap_headers, experiment, completed_runs, sessionmaker
):
    async with sessionmaker() as session:
        session.add(
            Run(
                experiment_id=experiment.id,
                config={"model": "bad", "temperature": 0.5},
                parameters={"model": "bad", "temperature": 0.5},
                config_hash="hash_fail",
                status="failed",
            )
        )
        await session.commit()

    response = await client.get(url(experiment, "report") + "?top_n=2", headers=bootstrap_headers)

    assert "## Top 2 Configurations" in response.text
    assert "| Total runs | 4 |" in response.text
    assert "| Failed | 1 |" in response.text
    assert len([line for line in response.text.splitlines() if line.startswith("| 2 | ")]) == 1
    assert not [line for line in response.text.splitlines() if line.startswith("| 3 | ")]


async def test_empty_experiment(client: httpx.AsyncClient, bootstrap_headers, experiment):
    report = await client.get(url(experiment, "report"), headers=bootstrap_headers)

    assert report.status_code == 200
    assert "| Total runs | 0 |" in report.text
    assert "_No scored runs available._" in report.text
    for kind in ("best", "env", "yaml"):
        response = await client.get(url(experiment, kind), headers=bootstrap_headers)
        assert response.status_code == 404
        assert "No completed runs" in response.json()["detail"]


@pytest.mark.parametrize("kind", ["best", "env", "yaml", "report"])
async def test_unknown_experiment_is_404_and_no_credentials_401(
    client: httpx.AsyncClient, bootstrap_headers, kind: str, experiment
):
    missing = await client.get(
        f"/api/export/experiments/{uuid.uuid4()}/{kind}", headers=bootstrap_headers
    )
    anonymous = await client.get(url(experiment, kind))

    assert missing.status_code == 404
    assert missing.json() == {"detail": "Experiment not found"}
    assert anonymous.status_code == 401


async def test_bad_top_n_is_422(client: httpx.AsyncClient, bootstrap_headers, experiment):
    response = await client.get(url(experiment, "report") + "?top_n=0", headers=bootstrap_headers)
    assert response.status_code == 422


async def test_a_plain_user_cannot_export_the_admins_experiment(
    client: httpx.AsyncClient, sessionmaker, experiment, completed_runs
):
    await make_user(sessionmaker, "plain")
    from tests.factories import login

    token = await login(client, "plain")
    response = await client.get(
        url(experiment, "best"), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403


def test_flatten():
    assert flatten({"model": "gpt-4", "temperature": 0.5}) == {
        "MODEL": "gpt-4",
        "TEMPERATURE": "0.5",
    }
    assert flatten({"llm": {"model": "gpt-4", "temp": 0.1}}) == {
        "LLM_MODEL": "gpt-4",
        "LLM_TEMP": "0.1",
    }
    assert flatten({"tags": ["a", "b"]}) == {"TAGS": '["a", "b"]'}
    assert flatten({"on": True, "off": False, "none": None}) == {
        "ON": "true",
        "OFF": "false",
        "NONE": "",
    }


def test_yaml_export_round_trips_awkward_values():
    best = {
        "experiment_id": "x",
        "experiment_name": "Test: with colon",
        "config_hash": "h",
        "runs": 1,
        "weighted_score": 0.5,
        "config": {"prompt": "Line one\nLine two: {{ input }}", "enabled": True, "empty": None},
        "exported_at": "now",
    }
    text = render_yaml(best)
    assert "enabled: true" in text
    assert "empty: null" in text
    assert yaml.safe_load(text)["config"] == best["config"]


TRICKY_VALUES = {
    "prompt": 'Say "hi"\nthen stop $(touch {marker}) `touch {marker}` ${{HOME}} \\ end',
    "apostrophe": 'Let\'s think $(touch {marker}) `touch {marker}` "quoted" \\ end',
    "model": "openai:gpt-4o-mini",
}


def _best(config: dict) -> dict:
    return {
        "experiment_id": "x",
        "experiment_name": "line one\nMODEL=injected",
        "config_hash": "h",
        "runs": 1,
        "weighted_score": 1.0,
        "exported_at": "now",
        "config": config,
    }


def test_a_sourced_env_export_runs_nothing_and_reads_every_value_as_written(tmp_path):
    from promptlooper.sweeps.export import render_env

    marker = tmp_path / "ran"
    config = {k: v.format(marker=marker) for k, v in TRICKY_VALUES.items()}
    env_file = tmp_path / "best.env"
    env_file.write_text(render_env(_best(config)))

    shell = subprocess.run(
        ["bash", "-c", f'. {env_file} && printf "%s\\0" "$PROMPT" "$APOSTROPHE" "$MODEL"'],
        capture_output=True,
        text=True,
        check=True,
    )

    assert not marker.exists()
    assert shell.stdout.split("\0")[:3] == [config["prompt"], config["apostrophe"], config["model"]]
    assert "MODEL=injected" not in env_file.read_text().splitlines()


def test_a_dotenv_parser_reads_values_without_apostrophes_or_braces_exactly(tmp_path):
    from dotenv import dotenv_values

    from promptlooper.sweeps.export import render_env

    # python-dotenv expands ${NAME} in every quoting style, so that is left out here
    prompt = TRICKY_VALUES["prompt"].format(marker="x").replace("${HOME}", "$HOME")
    config = {"prompt": prompt, "model": "m"}

    parsed = dotenv_values(stream=io.StringIO(render_env(_best(config))))

    assert parsed["PROMPT"] == config["prompt"]
    assert parsed["MODEL"] == "m"


def test_parameters_named_like_loader_or_shell_variables_are_not_set(tmp_path):
    from promptlooper.sweeps.export import render_env

    text = render_env(_best({"path": "/evil", "ld_preload": "/evil.so", "ldap_url": "x"}))

    assert "\nPATH=" not in text
    assert "\nLD_PRELOAD=" not in text
    assert "# not set (the shell or loader acts on PATH): PATH=/evil" in text
    assert "\nLDAP_URL=x" in text


@pytest.mark.parametrize("kind", ["env", "yaml", "report"])
async def test_each_text_export_is_documented_with_the_type_it_answers(
    client: httpx.AsyncClient, app, bootstrap_headers, experiment, completed_runs, kind: str
):
    response = await client.get(url(experiment, kind), headers=bootstrap_headers)
    documented = app.openapi()["paths"][f"/api/export/experiments/{{experiment_id}}/{kind}"]

    assert response.status_code == 200
    media_type = response.headers["content-type"].split(";")[0]
    assert list(documented["get"]["responses"]["200"]["content"]) == [media_type]
