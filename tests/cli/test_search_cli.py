"""Racing from the command line: one-line errors, progress, the leaderboard's eliminations."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.cli.inprocess import Invoke
from tests.sweeps.test_search_racing import racing, with_a_broken_config
from tests.sweeps.test_search_spec import ONE_CONFIG


def test_a_racing_search_of_one_config_is_a_one_line_error(cli: Invoke, tmp_path: Path):
    sweep = tmp_path / "one.yaml"
    sweep.write_text(yaml.safe_dump(ONE_CONFIG))

    outcome = cli("sweep", "validate", str(sweep))

    assert outcome.code == 2
    assert outcome.err == "error: search.strategy: racing compares configs; the space has one\n"


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
