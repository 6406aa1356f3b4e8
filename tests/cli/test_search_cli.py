"""Racing from the command line: one-line errors, progress, the leaderboard's eliminations."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import yaml
from sqlalchemy import select

from promptlooper.db.engine import create_engine
from promptlooper.sweeps.models import Run
from tests.cli.inprocess import Invoke
from tests.sweeps.test_search_optuna import tuning
from tests.sweeps.test_search_racing import racing, with_a_broken_config
from tests.sweeps.test_search_spec import ONE_CONFIG


def test_a_racing_search_of_one_config_is_a_one_line_error(cli: Invoke, tmp_path: Path):
    sweep = tmp_path / "one.yaml"
    sweep.write_text(yaml.safe_dump(ONE_CONFIG))

    outcome = cli("sweep", "validate", str(sweep))

    assert outcome.code == 2
    assert outcome.err == "error: search.strategy: racing compares configs; the space has one\n"


def test_a_seed_optuna_cannot_take_is_a_one_line_error_before_anything_runs(
    cli: Invoke, tmp_path: Path
):
    sweep = tmp_path / "tune.yaml"
    sweep.write_text(yaml.safe_dump(tuning(2, seed=-1)))

    checked = cli("sweep", "validate", str(sweep))
    ran = cli("sweep", "run", str(sweep))

    for outcome in (checked, ran):
        assert outcome.code == 2
        assert outcome.err.endswith(
            "error: search.seed: Input should be greater than or equal to 0\n"
        ), outcome.err
        assert "Traceback" not in outcome.err
    assert "experiment" not in ran.err


def test_a_race_lists_its_eliminations_under_the_leaderboard(cli: Invoke, tmp_path: Path):
    sweep = tmp_path / "race.yaml"
    sweep.write_text(yaml.safe_dump(racing({"good": 0.95, "close": 0.93, "bad": 0.1})))

    outcome = cli("sweep", "run", str(sweep))

    assert outcome.code == 0, outcome.err
    assert "racing: done, 2 of 3 configs left" in outcome.err
    assert "eliminated" in outcome.out
    lines = [line for line in outcome.out.splitlines() if "lost to" in line]
    assert len(lines) == 1
    assert "mock:bad" in lines[0]
    assert "after 20 rows" in lines[0]


def test_a_config_whose_runs_all_failed_is_listed_with_its_reason(cli: Invoke, tmp_path: Path):
    sweep = tmp_path / "race.yaml"
    sweep.write_text(yaml.safe_dump(with_a_broken_config(racing({"good": 0.95, "close": 0.93}))))

    outcome = cli("sweep", "run", str(sweep))

    assert outcome.code == 0, outcome.err
    (line,) = [line for line in outcome.out.splitlines() if "all runs failed" in line]
    assert "broken:down" in line
    assert "all runs failed on 20 rows, while" in line


def test_resuming_a_finished_race_says_so_and_runs_nothing(cli: Invoke, tmp_path: Path):
    sweep = tmp_path / "race.yaml"
    sweep.write_text(yaml.safe_dump(racing({"good": 0.95, "close": 0.93, "bad": 0.1})))
    ran = cli("sweep", "run", str(sweep))
    experiment_id = re.search(r"experiment ([0-9a-f-]{36})", ran.err).group(1)
    completed = int(re.search(r"completed (\d+)", ran.out).group(1))
    skipped = int(re.search(r"skipped (\d+)", ran.out).group(1))

    outcome = cli("sweep", "resume", experiment_id)

    assert outcome.code == 0, outcome.err
    assert outcome.out == (
        f"nothing to resume: experiment {experiment_id} is finished ({completed} of 240 runs "
        f"completed, {skipped} skipped by the search)\n"
    )
    assert "resuming" not in outcome.err
    assert completed + skipped == 240


def test_validate_refuses_a_budget_in_dollars_over_unpriced_models(cli: Invoke, tmp_path: Path):
    sweep = tmp_path / "race.yaml"
    sweep.write_text(yaml.safe_dump(racing({"good": 0.95, "close": 0.93}, budget={"usd": 0.5})))

    outcome = cli("sweep", "validate", str(sweep))

    assert outcome.code == 2
    assert outcome.err.startswith(
        "error: search.budget.usd: mock:close, mock:good have no price in providers.<name>.prices"
    )
    assert outcome.err.count("\n") == 1


def test_an_optuna_sweep_file_samples_its_ranges(cli: Invoke, tmp_path: Path):
    sweep = tmp_path / "tune.yaml"
    sweep.write_text(yaml.safe_dump(tuning(n_trials=4)))

    outcome = cli("sweep", "run", str(sweep))

    assert outcome.code == 0, outcome.err
    experiment_id = re.search(r"experiment ([0-9a-f-]{36})", outcome.err).group(1)
    database = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    parameters = asyncio.run(_parameters(database, experiment_id))
    assert len(parameters) > 1
    for config in parameters:
        assert 0.0 <= config["temperature"] <= 1.5
        assert isinstance(config["max_tokens"], int)
        assert 64 <= config["max_tokens"] <= 512


def test_validate_reads_a_sweep_file_s_ranges_as_ranges(cli: Invoke, tmp_path: Path):
    document = tuning()
    document["parameter_space"]["temperature"] = {"low": 1.5, "high": 0.0}
    sweep = tmp_path / "tune.yaml"
    sweep.write_text(yaml.safe_dump(document))
    del document["search"]
    unsearched = tmp_path / "grid.yaml"
    document["parameter_space"]["temperature"] = {"low": 0.0, "high": 1.5}
    unsearched.write_text(yaml.safe_dump(document))

    inverted = cli("sweep", "validate", str(sweep))
    without_optuna = cli("sweep", "validate", str(unsearched))

    assert inverted.code == 2
    assert inverted.err == "error: parameter_space: temperature: low (1.5) is above high (0)\n"
    assert without_optuna.code == 2
    assert without_optuna.err.startswith("error: parameter_space.max_tokens: a range needs search")


async def _parameters(db_url: str, experiment_id: str) -> list[dict]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            query = select(Run.parameters).where(Run.experiment_id == uuid.UUID(experiment_id))
            return [row[0] for row in await connection.execute(query.distinct())]
    finally:
        await engine.dispose()
