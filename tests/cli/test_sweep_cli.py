"""``promptlooper sweep``/``export``/``cache`` as a user runs them, in a subprocess, on both
databases, including a sweep killed mid-run and resumed."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from sqlalchemy import func, select

from promptlooper.cli import sweeps
from promptlooper.db.engine import create_engine
from promptlooper.sweeps.models import Experiment, Run, Score, StageResult
from tests.cli.inprocess import Invoke

CLI = [sys.executable, "-m", "promptlooper"]
EXAMPLE = Path(__file__).parents[2] / "examples" / "ticket-triage" / "sweep.yaml"
ID = re.compile(r"experiment ([0-9a-f-]{36})")


def env_for(tmp_path: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"API_KEY", "REDIS_URL"}}
    return env | {"DATABASE_URL": db_url, "DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def slow_sweep(tmp_path: Path, rows: int = 20) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["parameter_space"] = {
        "model": ["mock:small", "mock:large"],
        "prompt": ["A {{ input }}", "B {{ input }}"],
    }
    doc["dataset"] = {
        "rows": [{"input": f"ticket {i} charged", "expected": "billing"} for i in range(rows)]
    }
    doc["providers"]["mock"]["latency_ms"] = 60
    doc["concurrency"] = 2
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def _state(db_url: str, experiment_id: str) -> dict[str, int | str]:
    engine = create_engine(db_url)
    eid = uuid.UUID(experiment_id)
    try:
        async with engine.connect() as conn:
            status = await conn.scalar(select(Experiment.status).where(Experiment.id == eid))
            runs = dict(
                (
                    await conn.execute(
                        select(Run.status, func.count())
                        .where(Run.experiment_id == eid)
                        .group_by(Run.status)
                    )
                ).all()
            )
            stages = await conn.scalar(
                select(func.count())
                .select_from(StageResult)
                .join(Run)
                .where(Run.experiment_id == eid)
            )
            distinct_stages = await conn.scalar(
                select(func.count(func.distinct(StageResult.run_id)))
                .join(Run)
                .where(Run.experiment_id == eid)
            )
            scores = await conn.scalar(
                select(func.count()).select_from(Score).join(Run).where(Run.experiment_id == eid)
            )
    finally:
        await engine.dispose()
    return {
        "status": status or "",
        **runs,
        "stages": stages or 0,
        "runs_with_stages": distinct_stages or 0,
        "scores": scores or 0,
    }


def test_validate_reports_ok_and_one_line_errors(tmp_path: Path, db_url: str):
    env = env_for(tmp_path, db_url)
    good = run(env, "sweep", "validate", str(EXAMPLE))
    shutil.copytree(EXAMPLE.parent, tmp_path / "example")
    bad_doc = yaml.safe_load(EXAMPLE.read_text())
    bad_doc["scorers"][0]["type"] = "telepathy"
    bad = tmp_path / "example" / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_doc))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")

    results = {
        "bad": run(env, "sweep", "validate", str(bad)),
        "broken": run(env, "sweep", "validate", str(broken)),
        "missing": run(env, "sweep", "validate", str(tmp_path / "nope.yaml")),
        "run-bad": run(env, "sweep", "run", str(bad)),
    }

    assert good.returncode == 0, good.stderr
    assert "12 configs × 12 rows × 1 repeats = 144 runs" in good.stdout
    for name, result in results.items():
        assert result.returncode == 2, name
        assert result.stderr.startswith("error: "), name
        assert result.stderr.count("\n") == 1, (name, result.stderr)
    assert "scorers[0]: unknown scorer type 'telepathy'" in results["bad"].stderr
    assert "broken.yaml line" in results["broken"].stderr
    assert "cannot read" in results["missing"].stderr


def test_a_sweep_over_sweep_max_runs_is_one_line_naming_the_setting(tmp_path: Path, db_url: str):
    env = env_for(tmp_path, db_url) | {"SWEEP_MAX_RUNS": "100"}

    results = [run(env, "sweep", verb, str(EXAMPLE)) for verb in ("validate", "run")]

    for result in results:
        assert result.returncode == 2
        assert result.stderr == (
            "error: parameter_space: 12 configs × 12 rows × 1 repeats is over the limit of 100 "
            "runs (the SWEEP_MAX_RUNS setting); use search: {strategy: random, n: ...}\n"
        )


def test_an_adapter_that_raises_fails_its_runs_and_the_sweep_goes_on(tmp_path: Path, db_url: str):
    """A provider adapter's unexpected exception (here the mock's ``float()`` of a parameter
    it cannot take) fails only the runs that met it, with the error stored on each."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["parameter_space"] = {
        "model": ["mock:small"],
        "temperature": [0.0, "hot"],
        "prompt": ["Classify: {{ input }}"],
    }
    doc["dataset"] = {"rows": [{"input": "I was charged twice", "expected": "billing"}] * 3}
    path = tmp_path / "hot.yaml"
    path.write_text(yaml.safe_dump(doc))

    result = run(env_for(tmp_path, db_url), "sweep", "run", str(path))

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    (experiment_id,) = set(ID.findall(result.stdout + result.stderr))
    state = asyncio.run(_state(db_url, experiment_id))
    assert (state["status"], state["completed"], state["failed"]) == ("completed", 3, 3)

    async def errors() -> set[str | None]:
        engine = create_engine(db_url)
        try:
            async with engine.connect() as conn:
                found = await conn.scalars(
                    select(Run.error).where(
                        Run.experiment_id == uuid.UUID(experiment_id), Run.status == "failed"
                    )
                )
                return set(found)
        finally:
            await engine.dispose()

    message = "mock failed: ValueError: could not convert string to float: 'hot'"
    assert asyncio.run(errors()) == {message}


def test_run_prints_leaderboard_and_exports_work(tmp_path: Path, db_url: str):
    env = env_for(tmp_path, db_url)

    result = run(env, "sweep", "run", str(EXAMPLE), "--concurrency", "32", "--project", "cli")

    assert result.returncode == 0, result.stderr
    experiment_id = ID.search(result.stdout).group(1)
    assert "ticket-triage: leaderboard" in result.stdout
    assert "prompt #3: You triage customer support tickets." in result.stdout
    assert "144 runs in" in result.stderr
    # Not a terminal: plain progress lines, the last one with every run finished.
    assert re.search(r"^\S.*: 144/144 runs \(\d+ done, 0 failed, \d+ cached\), [\d.]+ runs/s$",
                     result.stderr, re.MULTILINE), result.stderr  # fmt: skip
    assert f"(top 10 of 12 configs; `promptlooper sweep show {experiment_id} --top N`" in (
        " ".join(result.stdout.split())
    )
    shown = run(env, "sweep", "show", experiment_id, "--top", "12")
    assert "of 12 configs" not in shown.stdout
    assert re.search(r"^│ 12 ", shown.stdout, re.MULTILINE), shown.stdout

    out = tmp_path / "best.json"
    exported = run(env, "export", experiment_id, "--format", "json", "-o", str(out))
    env_text = run(env, "export", experiment_id, "--format", "env").stdout
    report = run(env, "export", experiment_id, "--format", "md", "--top-n", "3").stdout
    bad_format = run(env, "export", experiment_id, "--format", "xml")

    assert exported.returncode == 0
    best = json.loads(out.read_text())
    assert best["experiment_name"] == "ticket-triage"
    assert best["config"]["model"] in {"mock:small", "mock:large"}
    assert "MODEL=" in env_text
    assert "## Top 3 Configurations" in report
    assert bad_format.returncode == 2
    assert "--format must be one of" in bad_format.stderr

    again = run(env, "sweep", "run", str(EXAMPLE), "--project", "cli")
    assert "144 from cache" in again.stderr
    stats = run(env, "cache", "stats")
    assert "projects of system:bootstrap-admin: 144 entries" in stats.stdout
    cleared = run(env, "cache", "clear")
    assert "removed 144 cached responses" in cleared.stdout
    listed = run(env, "sweep", "list", "--project", "cli")
    assert listed.stdout.count("ticket-triage") == 2


def _interruptible() -> None:
    """A terminal's Ctrl-C reaches a program with SIGINT's default handling, even when the
    test run itself was started in the background (which ignores SIGINT, and children inherit
    that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(env: dict[str, str], path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [*CLI, "sweep", "run", str(path), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    match = ID.search(line)
    assert match, line
    return process, match.group(1)


async def _wait_for_progress(db_url: str, experiment_id: str, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if int((await _state(db_url, experiment_id)).get("completed", 0)) >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the sweep made no progress")


async def test_a_killed_sweep_resumes_and_every_run_completes_exactly_once(
    tmp_path: Path, db_url: str
):
    env = env_for(tmp_path, db_url) | {"SWEEP_LEASE_SECONDS": "2"}
    process, experiment_id = _start(env, slow_sweep(tmp_path))
    await _wait_for_progress(db_url, experiment_id, at_least=8)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    crashed = await _state(db_url, experiment_id)
    await asyncio.sleep(2)  # its lease lapses

    resumed = run(env, "sweep", "resume", experiment_id)
    final = await _state(db_url, experiment_id)

    assert crashed["status"] == "running"  # nobody could mark it: it was killed
    assert 8 <= int(crashed["completed"]) < 80
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {crashed['completed']} of 80 runs already completed" in resumed.stderr
    assert final["status"] == "completed"
    assert final["completed"] == 80
    assert "pending" not in final
    assert "failed" not in final
    assert final["stages"] == final["runs_with_stages"] == 80  # one stage row per run, no more
    assert final["scores"] == 160


async def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path, db_url: str):
    env = env_for(tmp_path, db_url)
    process, experiment_id = _start(env, slow_sweep(tmp_path))
    await _wait_for_progress(db_url, experiment_id, at_least=4)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    stopped = await _state(db_url, experiment_id)

    resumed = run(env, "sweep", "resume", experiment_id)
    final = await _state(db_url, experiment_id)

    assert process.returncode == 130
    assert f"resume with `promptlooper sweep resume {experiment_id}`" in stderr
    assert "Traceback" not in stderr
    assert stopped["status"] == "cancelled"
    assert resumed.returncode == 0, resumed.stderr
    assert final["completed"] == 80
    assert final["stages"] == 80


async def test_resuming_a_sweep_started_without_the_cache_does_not_read_it(
    tmp_path: Path, db_url: str
):
    env = env_for(tmp_path, db_url)
    path = slow_sweep(tmp_path, rows=10)
    filled = run(env, "sweep", "run", str(path), "--concurrency", "8")
    process, experiment_id = _start(env, path, "--no-cache")
    await _wait_for_progress(db_url, experiment_id, at_least=4)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)

    resumed = run(env, "sweep", "resume", experiment_id)

    assert "40 runs in" in filled.stderr
    assert process.returncode == 130
    assert resumed.returncode == 0, resumed.stderr
    assert "0 from cache; cache 0 hits, 0 misses" in resumed.stderr


def test_a_sweep_running_elsewhere_cannot_be_resumed_until_its_lease_lapses(
    cli: Invoke, tmp_path: Path
):
    from promptlooper.db.engine import create_sessionmaker
    from promptlooper.sweeps.lease import Lease

    sweep = slow_sweep(tmp_path, rows=1)
    experiment_id = ID.search(cli("sweep", "run", str(sweep)).err).group(1)

    async def hold() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        try:
            assert await Lease.acquire(create_sessionmaker(engine), uuid.UUID(experiment_id), 60)
        finally:
            await engine.dispose()

    asyncio.run(hold())
    refused = cli("sweep", "resume", experiment_id)

    assert refused.code == 2
    assert refused.err.startswith("error: The experiment is running in another process (")
    assert "it can be resumed once its lease lapses, at " in refused.err
    assert refused.err.count("\n") == 1


def test_cache_stats_and_clear_take_a_project_or_everything(cli: Invoke, tmp_path: Path):
    sweep = slow_sweep(tmp_path, rows=3)
    first = cli("sweep", "run", str(sweep), "--project", "a", "-c", "8")
    other = cli("sweep", "run", str(sweep), "--project", "b", "-c", "8")

    mine = cli("cache", "stats")
    one = cli("cache", "stats", "--project", "a")
    missing = cli("cache", "stats", "--project", "nope")
    both = cli("cache", "clear", "--all", "--project", "a")
    cleared = cli("cache", "clear", "--project", "a")
    everything = cli("cache", "stats", "--all")
    wiped = cli("cache", "clear", "--all")

    assert "0 from cache" in first.err
    assert "0 from cache" in other.err  # project b does not read project a's answers
    assert "projects of system:bootstrap-admin: 24 entries" in mine.out
    assert "whole cache: 24 of 1000000 entries" in mine.out
    assert "of 1.1 GB" in mine.out
    assert "project a of system:bootstrap-admin: 12 entries" in one.out
    assert (missing.code, missing.err) == (2, "error: No project named 'nope'\n")
    assert (both.code, both.err) == (2, "error: --all: give --all, or --project/--user, not both\n")
    assert "removed 12 cached responses (project a of system:bootstrap-admin)" in cleared.out
    assert "all projects: 12 entries" in everything.out
    assert "removed 12 cached responses (all projects)" in wiped.out


def test_resume_of_an_unknown_experiment_is_a_one_line_error(tmp_path: Path, db_url: str):
    result = run(env_for(tmp_path, db_url), "sweep", "resume", str(uuid.uuid4()))
    assert result.returncode == 2
    assert result.stderr == "error: Experiment not found\n"


@pytest.mark.parametrize("bad_id", ["not-a-uuid"])
def test_malformed_ids_are_usage_errors(tmp_path: Path, db_url: str, bad_id: str):
    result = run(env_for(tmp_path, db_url), "sweep", "show", bad_id)
    assert result.returncode == 2


def test_a_sweep_that_fails_to_start_leaves_the_garbage_collector_on(cli: Invoke):
    assert gc.isenabled()
    outcome = cli("sweep", "resume", str(uuid.uuid4()))

    assert (outcome.code, outcome.err) == (2, "error: Experiment not found\n")
    assert gc.isenabled()  # start-up pauses it; an error must not leave it off


@pytest.mark.parametrize(
    ("part", "where"),
    [
        (
            {"parameter_space": {"model": ["mock:small"], "prompt": ["Hi"], "t": [0.5, ".nan"]}},
            "parameter_space.t.1",
        ),
        (
            {"dataset": {"rows": [{"input": "charged twice", "weight": "-.inf"}]}},
            "dataset.rows.0.weight",
        ),
    ],
)
def test_nan_and_infinity_in_a_sweep_file_are_one_line_errors(
    cli: Invoke, tmp_path: Path, part: dict, where: str
):
    doc = {
        "name": "nan",
        "parameter_space": {"model": ["mock:small"], "prompt": ["Hi {{ input }}"]},
        "dataset": {"rows": [{"input": "charged twice"}]},
        **part,
    }
    path = tmp_path / "nan.yaml"
    # YAML writes NaN and infinity as .nan and .inf; safe_dump would quote them as strings
    path.write_text(yaml.safe_dump(doc).replace("'.nan'", ".nan").replace("'-.inf'", "-.inf"))

    outcomes = [cli("sweep", command, str(path)) for command in ("validate", "run")]

    for outcome in outcomes:
        assert outcome.code == 2
        assert outcome.err == f"error: {where}: Input should be a finite number\n"


def test_plain_progress_prints_the_first_update_then_one_a_period_and_the_last(monkeypatch):
    printed: list[str] = []
    monkeypatch.setattr(sweeps.err_console, "print", lambda text, **_: printed.append(text))
    clock = iter([0.0, 5.0, 31.0, 32.0, 33.0])
    monkeypatch.setattr(sweeps.time, "monotonic", lambda: next(clock))
    plain = sweeps._PlainProgress(every=30.0)
    for finished in (1, 2, 3, 4, 5):
        plain(SimpleNamespace(note=None, finished=finished, total=5, done=finished,
                              failed=0, cached=0, rate=1.0))  # fmt: skip

    shown = [line.split(" runs")[0] for line in printed]
    assert shown == ["sweep: 1/5", "sweep: 3/5", "sweep: 5/5"]
