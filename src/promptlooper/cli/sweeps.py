"""``promptlooper sweep``, ``promptlooper export`` and ``promptlooper cache``.

Sweeps run in this process against ``DATABASE_URL``; a server is not needed. Work is owned by
``--user`` (the built-in admin by default) and filed under ``--project``.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from promptlooper.auth.principal import Principal
from promptlooper.cli.common import (
    RayOption,
    async_command,
    collector_paused,
    console,
    database,
    err_console,
    freeze_long_lived_objects,
    join_cluster,
    load_settings,
    release_freed_memory,
    session_scope,
    with_ray,
)
from promptlooper.errors import Invalid, NotFound
from promptlooper.files import write_text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from promptlooper.projects.models import Project
    from promptlooper.settings import Settings
    from promptlooper.sweeps.execution import ExecutionResult
    from promptlooper.sweeps.summary import ExperimentSummary

sweep_app = typer.Typer(help="Run and inspect sweeps.", no_args_is_help=True)
cache_app = typer.Typer(help="Inspect or clear the response cache.", no_args_is_help=True)

EXIT_INTERRUPTED = 130
FORMATS = ("json", "env", "yaml", "md")


async def principal_for(session: AsyncSession, username: str | None) -> Principal:
    from promptlooper.auth import service as auth

    user = await (
        auth.require_user(session, username) if username else auth.bootstrap_user(session)
    )
    return Principal(user.id, user.username, user.is_admin, "local")


async def project_of(session: AsyncSession, principal: Principal, name: str) -> Project:
    """``principal``'s project ``name``; when only other users have one, the error says whose
    and how to act as them."""
    from promptlooper.projects import service as projects

    try:
        return await projects.find_project(session, principal, name)
    except NotFound:
        owners = sorted({owner for _, owner in await projects.find_projects(session, name=name)})
        if not owners:
            raise
        raise NotFound(
            f"No project named {name!r} of {principal.username}; "
            f"{', '.join(owners)} has one: add --user {owners[0]}"
        ) from None


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TextColumn(
            "[green]{task.fields[done]} done[/] [red]{task.fields[failed]} failed[/] "
            "[cyan]{task.fields[cached]} cached[/]"
        ),
        TextColumn("{task.fields[rate]:.1f} runs/s"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


PLAIN_PROGRESS_SECONDS = 30.0
"""How often a sweep whose output is not a terminal (a log file, CI) prints a progress line."""


class _PlainProgress:
    """Progress as plain lines on stderr, for output that is not a terminal: there the bar
    draws nothing until the end, and a log would show no sign of life for the whole sweep.
    The first update, then one every ``PLAIN_PROGRESS_SECONDS``, and the last."""

    def __init__(self, every: float = PLAIN_PROGRESS_SECONDS) -> None:
        self.every = every
        self.last: float | None = None

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        final = progress.finished >= progress.total
        if not final and self.last is not None and now - self.last < self.every:
            return
        self.last = now
        err_console.print(
            f"{progress.note or 'sweep'}: {progress.finished:,}/{progress.total:,} runs "
            f"({progress.done:,} done, {progress.failed:,} failed, {progress.cached:,} cached), "
            f"{progress.rate:.1f} runs/s",
            soft_wrap=True,
        )


async def _create(
    engine: AsyncEngine, settings: Settings, spec: Any, project: str, user: str | None
) -> uuid.UUID:
    from promptlooper.db.engine import create_sessionmaker
    from promptlooper.projects import service as projects
    from promptlooper.sweeps import service
    from promptlooper.sweeps.providers import ProviderPolicy

    async with create_sessionmaker(engine)() as session:
        principal = await principal_for(session, user)
        owned = await projects.get_or_create_project(session, principal, project)
        experiment = await service.create_experiment(
            session,
            principal,
            owned.id,
            spec,
            policy=ProviderPolicy.workstation(settings),
            max_runs=settings.sweep_max_runs,
            allow_python=True,
        )
        await session.commit()
        return experiment.id


async def _made_so_far(engine: AsyncEngine, experiment_id: uuid.UUID) -> tuple[str | None, int]:
    """What a resume finds: a line saying the experiment has nothing left to run (None when it
    has), and how many runs are already completed. A search's skipped runs are its decisions,
    so they count as done but never as completed."""
    from promptlooper.db.engine import create_sessionmaker
    from promptlooper.sweeps import service

    async with create_sessionmaker(engine)() as session:
        experiment = await service.get_experiment(
            session, Principal.local_operator(), experiment_id
        )
        counts = (await service.progress(session, [experiment_id]))[experiment_id]
    skipped = f", {counts['skipped']:,} skipped by the search" if counts["skipped"] else ""
    if not service.finished(experiment, counts):
        return None, counts["completed"]
    return (
        f"nothing to resume: experiment {experiment_id} is finished ({counts['completed']:,} "
        f"of {experiment.total_runs:,} runs completed{skipped})"
    ), counts["completed"]


async def _execute(
    engine: AsyncEngine,
    settings: Settings,
    experiment_id: uuid.UUID,
    *,
    concurrency: int | None,
    use_cache: bool | None,
    completed: int = 0,
) -> ExecutionResult:

    from promptlooper.events import EventBus
    from promptlooper.sweeps.execution import ExecutionOptions, run_experiment
    from promptlooper.sweeps.providers import ProviderPolicy
    from promptlooper.sweeps.store import CacheBound

    bar = _progress_bar()
    tasks: list[Any] = []

    def started(pending: int, total: int) -> None:
        freeze_long_lived_objects()  # start-up is over: the experiment and its adapters are loaded
        bar.start()
        tasks.append(bar.add_task("sweep", total=pending, done=0, failed=0, cached=0, rate=0.0))
        if completed:
            err_console.print(f"resuming: {completed} of {total} runs already completed")

    plain = None if err_console.is_terminal else _PlainProgress()

    def advanced(progress: Any, _outcome: Any) -> None:
        if plain is not None:
            plain(progress)
        bar.update(
            tasks[0],
            description=progress.note or "sweep",
            total=progress.total,
            completed=progress.finished,
            done=progress.done,
            failed=progress.failed,
            cached=progress.cached,
            rate=progress.rate,
        )

    bus = EventBus(settings.redis_url)
    options = ExecutionOptions(
        policy=ProviderPolicy.workstation(settings),
        concurrency=concurrency,
        use_cache=use_cache,
        allow_python=True,
        cache_bound=CacheBound.from_settings(settings),
        lease_seconds=settings.sweep_lease_seconds,
        max_runs=settings.sweep_max_runs,
        ray_address=settings.ray_address or None,
    )
    try:
        return await run_experiment(
            engine, experiment_id, options=options, bus=bus, on_progress=advanced, on_start=started
        )
    finally:
        if tasks:
            bar.stop()
        await bus.close()


LONG_VALUE = 24


def _labels(space: dict[str, list[Any]]) -> dict[str, dict[str, str]]:
    """Short labels (``#1``, ``#2``) for parameters whose values are too long for a table."""
    labels: dict[str, dict[str, str]] = {}
    for key, values in space.items():
        if any(len(str(v)) > LONG_VALUE for v in values):
            labels[key] = {json.dumps(v, sort_keys=True): f"#{i}" for i, v in enumerate(values, 1)}
    return labels


async def _show_leaderboard(
    engine: AsyncEngine, experiment_id: uuid.UUID, limit: int = 10
) -> ExperimentSummary:
    from promptlooper.db.engine import create_sessionmaker
    from promptlooper.sweeps import service
    from promptlooper.sweeps.search import store as search_store
    from promptlooper.sweeps.verdict import answer, score_text, versus_text

    async with create_sessionmaker(engine)() as session:
        experiment = await service.get_experiment(
            session, Principal.local_operator(), experiment_id, without_spec=True
        )
        summary = await service.summary(session, experiment)
        eliminated = await search_store.eliminated(session, experiment.id, summary)
    space = experiment.parameter_space
    labels = _labels(space)
    repeated = any(c.repeats > 1 for c in summary.configs)
    table = Table(
        "#",
        "score [95 %]",
        "vs #1 [95 %], adjusted p",
        "runs",
        "fail",
        *(("pass^k", "flaky") if repeated else ()),
        *space,
        *summary.scorers,
        "p50 ms",
        "config",
        title=f"{experiment.name}: leaderboard",
    )
    for rank, config in enumerate(summary.configs[:limit], start=1):
        params = [
            labels[k].get(json.dumps(config.parameters.get(k), sort_keys=True), "?")
            if k in labels
            else str(config.parameters.get(k))
            for k in space
        ]
        means = [f"{config.scores[n]:.3f}" if n in config.scores else "" for n in summary.scorers]
        flakiness = (
            (
                f"{config.pass_k:.3f}" if config.pass_k is not None else "",
                str(len(config.flaky_rows) or ""),
            )
            if repeated
            else ()
        )
        table.add_row(
            str(rank),
            score_text(config),
            versus_text(config.versus_leader),
            str(config.completed),
            str(config.failed or ""),
            *flakiness,
            *params,
            *means,
            f"{config.p50_latency_ms:.0f}" if config.p50_latency_ms is not None else "",
            config.config_hash[:8],
        )
    console.print(table)
    if sentence := answer(summary):
        console.print(sentence, highlight=False, soft_wrap=True)
    if len(summary.configs) > limit:
        console.print(
            f"(top {limit} of {len(summary.configs)} configs; "
            f"`promptlooper sweep show {experiment.id} --top N` shows more)",
            highlight=False,
            soft_wrap=True,
        )
    for key in labels:
        for index, value in enumerate(space[key], start=1):
            console.print(
                f"  {key} #{index}: {_short(value, 100)}", highlight=False, soft_wrap=True
            )
    if eliminated:
        console.print(f"eliminated by the race ({len(eliminated)}):", highlight=False)
    for entry in eliminated:
        params = ", ".join(f"{k}={_short(v, 30)}" for k, v in entry["parameters"].items())
        why = (
            f"{entry['reason']} on {entry['rows']} rows, while {entry['lost_to'][:8]} led"
            if entry["reason"]
            else f"lost to {entry['lost_to'][:8]} after {entry['rows']} rows: "
            f"{entry['effect']:+.3f} (adjusted p {entry['p_value']:.2g})"
        )
        console.print(
            f"  {entry['config_hash'][:8]}  {params}  {why}", highlight=False, soft_wrap=True
        )
    counts = summary.counts
    console.print(
        f"experiment {experiment.id}  status {experiment.current_status}  "
        f"completed {counts.get('completed', 0)}  failed {counts.get('failed', 0)}  "
        f"pending {counts.get('pending', 0)}"
        + (f"  skipped {counts['skipped']}" if counts.get("skipped") else ""),
        soft_wrap=True,
    )
    return summary


def _short(value: Any, width: int = 40) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run_sweep(
    settings: Settings,
    *,
    experiment_id: uuid.UUID | None = None,
    spec: Any = None,
    project: str = "default",
    user: str | None = None,
    concurrency: int | None = None,
    use_cache: bool | None = None,
    fail_under: float | None = None,
) -> uuid.UUID:
    """Create (from ``spec``) or resume an experiment, run it with a progress bar and print the
    leaderboard, all in one event loop; Ctrl-C saves what finished and exits with 130. Exits
    with 1 when every run failed, or when the best score is under ``fail_under``: a CI step
    that runs a sweep fails with it. ``use_cache`` None keeps the experiment's choice (a new
    one uses the cache)."""
    import asyncio

    current: list[uuid.UUID] = [experiment_id] if experiment_id else []
    shown: list[ExperimentSummary] = []

    async def main() -> None:
        nonlocal spec
        async with database(settings) as engine:
            completed = 0
            if spec is not None:
                join_cluster(settings)  # before the experiment is created
                current.append(await _create(engine, settings, spec, project, user))
                err_console.print(f"experiment {current[-1]}: {spec.name}")
                spec = None  # stored: the run reads it back, and one copy of a dataset is enough
            else:
                finished, completed = await _made_so_far(engine, current[-1])
                if finished:
                    console.print(finished, highlight=False, soft_wrap=True)
                    return
                join_cluster(settings)  # before it is marked running again
            result = await _execute(
                engine,
                settings,
                current[-1],
                concurrency=concurrency,
                use_cache=use_cache,
                completed=completed,
            )
            p = result.progress
            err_console.print(
                f"{p.finished} runs in {p.elapsed:.2f} s: {p.done} completed, {p.failed} failed, "
                f"{p.cached} from cache; cache {result.cache_hits} hits, "
                f"{result.cache_misses} misses; {result.retries} retries"
            )
            if settings.ray_address:
                from promptlooper.cli.cluster import print_cluster_work
                from promptlooper.cli.training import print_model_hosts

                # A sweep of local models runs here, its models in actors on the cluster.
                if not print_model_hosts(settings.ray_address):
                    print_cluster_work(settings.ray_address)
            if p.note:
                err_console.print(p.note, highlight=False, soft_wrap=True)
            release_freed_memory()  # the executed runs' memory, under the leaderboard's
            shown.append(await _show_leaderboard(engine, current[-1]))
        console.print(
            f"exports: promptlooper export {current[-1]} --format json|env|yaml|md", soft_wrap=True
        )

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        if current:
            err_console.print(
                "interrupted: finished runs are saved; resume with "
                f"`promptlooper sweep resume {current[-1]}`"
            )
        sys.exit(EXIT_INTERRUPTED)
    if shown and (problem := _below_bar(shown[-1], fail_under)):
        err_console.print(f"failed: {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    return current[-1]


def _below_bar(summary: ExperimentSummary, fail_under: float | None) -> str | None:
    """Why a finished sweep should fail its caller, or None."""
    counts = summary.counts
    if counts.get("failed", 0) and not counts.get("completed", 0):
        return f"every run failed ({counts['failed']:,}); the errors are in `sweep show` and the UI"
    if fail_under is None:
        return None
    ranked = summary.ranked
    if not ranked:
        return f"no scored run to hold against --fail-under {fail_under:g}"
    best = ranked[0]
    if best.score is not None and best.score < fail_under:
        return (
            f"the best score {best.score:.4f} ({best.config_hash[:8]}) is under "
            f"--fail-under {fail_under:g}"
        )
    return None


@sweep_app.command("run")
def run(
    file: Path = typer.Argument(..., help="Sweep file (YAML or JSON)."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", min=1, max=4096, help="Parallel runs (default: the file's)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or fill the cache."),
    project: str = typer.Option("default", "--project", help="Project to file it under."),
    user: str | None = typer.Option(None, "--user", help="Owner (default: the built-in admin)."),
    fail_under: float | None = typer.Option(
        None,
        "--fail-under",
        min=0.0,
        max=1.0,
        help="Exit with 1 when the best config's score is under SCORE (every run failing "
        "always does).",
        metavar="SCORE",
    ),
    ray: str | None = RayOption,
) -> None:
    """Create an experiment from FILE and run it, with a progress bar and a leaderboard."""
    from promptlooper.sweeps.spec import load_sweep_file, parse_spec

    settings = with_ray(load_settings(), ray)
    with collector_paused():  # until the sweep's start freezes what start-up built
        run_sweep(
            settings,
            # Not kept here: once the experiment stores it, run_sweep lets its dataset go.
            spec=parse_spec(load_sweep_file(file)),
            project=project,
            user=user,
            concurrency=concurrency,
            use_cache=False if no_cache else None,
            fail_under=fail_under,
        )


@sweep_app.command("resume")
def resume(
    experiment_id: uuid.UUID = typer.Argument(..., help="The experiment to continue."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1, max=4096),
    cache: bool | None = typer.Option(
        None,
        "--cache/--no-cache",
        help="Use the response cache (default: as the sweep was started).",
    ),
    ray: str | None = RayOption,
) -> None:
    """Run what an interrupted or failed sweep has not completed; nothing runs twice."""
    with collector_paused():  # until the sweep's start freezes what start-up built
        run_sweep(
            with_ray(load_settings(), ray),
            experiment_id=experiment_id,
            concurrency=concurrency,
            use_cache=cache,
        )


@sweep_app.command("validate")
def validate(file: Path = typer.Argument(..., help="Sweep file (YAML or JSON).")) -> None:
    """Check a sweep file without running it."""
    from promptlooper.sweeps.plan import compile_plan
    from promptlooper.sweeps.spec import load_sweep_file, parse_spec

    spec = parse_spec(load_sweep_file(file))
    plan = compile_plan(spec, allow_python=True, max_runs=load_settings().sweep_max_runs)
    models = sorted(plan.model_refs())
    console.print(
        f"ok: {spec.name}: {len(plan.configs)} configs × {len(plan.rows)} rows × "
        f"{spec.repeats} repeats = {plan.total_runs} runs; "
        f"{len(plan.stages)} stage(s); models {', '.join(models)}; "
        f"scorers {', '.join(f'{n} ({w:g})' for n, w in plan.weights.items()) or 'none'}"
    )


@sweep_app.command("show")
@async_command
async def show(
    experiment_id: uuid.UUID = typer.Argument(...),
    top: int = typer.Option(50, "--top", min=1, help="Configs to show, best first."),
) -> None:
    """Show an experiment's leaderboard."""
    async with database(load_settings()) as engine:
        await _show_leaderboard(engine, experiment_id, limit=top)


def _margin(value: float) -> float:
    from promptlooper.sweeps.verdict import check_margin

    try:
        return check_margin(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@sweep_app.command("compare")
@async_command
async def compare(
    baseline: uuid.UUID = typer.Argument(..., help="The baseline experiment."),
    candidate: uuid.UUID = typer.Argument(
        ..., help="The candidate experiment, over the same dataset (or BASELINE again)."
    ),
    margin: float = typer.Option(
        0.0, "--margin", callback=_margin, help="Loss of weighted score tolerated, 0 to 1."
    ),
    baseline_config: str | None = typer.Option(
        None, "--baseline-config", "-a", help="Config hash or prefix (default: the best)."
    ),
    candidate_config: str | None = typer.Option(
        None,
        "--candidate-config",
        "-b",
        help="Config hash or prefix (default: the best; the runner-up when BASELINE is given "
        "twice).",
    ),
    rows: int = typer.Option(5, "--rows", min=0, help="How many of the worst rows to list."),
) -> None:
    """A regression gate for CI: exit 1 when the candidate is significantly worse than the
    baseline by more than --margin (paired over the rows both answered), 0 otherwise; it
    prints why either way."""
    from promptlooper.sweeps import comparison
    from promptlooper.sweeps.verdict import gate, score_text

    async with session_scope(load_settings()) as session:
        found = await comparison.compare(
            session,
            Principal.local_operator(),
            baseline,
            candidate,
            a=baseline_config,
            b=candidate_config,
        )
    decided = gate(found.paired, found.rows_needed, margin)
    for name, side in (("baseline", found.baseline), ("candidate", found.candidate)):
        console.print(
            f"{name:9} {side.experiment.name} ({side.experiment.id}) config "
            f"{side.config.config_hash[:8]}: {score_text(side.config)}",
            highlight=False,
            soft_wrap=True,
        )
    if rows and found.rows:
        table = Table("row", "baseline", "candidate", "change", "input", title="worst rows first")
        for row in found.rows[:rows]:
            table.add_row(
                str(row.row_index),
                f"{row.baseline:.3f}",
                f"{row.candidate:.3f}",
                f"{row.change:+.3f}",
                _short(json.dumps(row.inputs, ensure_ascii=False), 60),
            )
        console.print(table)
    console.print(
        ("FAIL: " if decided.failed else "PASS: ") + decided.reason, highlight=False, soft_wrap=True
    )
    if decided.failed:
        raise typer.Exit(1)


@sweep_app.command("list")
@async_command
async def list_experiments(
    project: str | None = typer.Option(
        None, "--project", help="Only projects of this name (default: every project)."
    ),
    user: str | None = typer.Option(
        None, "--user", help="Only this user's projects (default: every user's)."
    ),
) -> None:
    """List experiments (the newest 500), with their owner, project and progress: all of them
    in the database unless --user or --project narrows the list. Never creates a project."""
    from promptlooper.auth import service as auth
    from promptlooper.projects import service as projects
    from promptlooper.sweeps import service

    async with session_scope(load_settings()) as session:
        owner = await auth.require_user(session, user) if user else None
        found = await projects.find_projects(
            session, owner_id=owner.id if owner else None, name=project
        )
        if project is not None and not found:
            raise NotFound(f"No project named {project!r}" + (f" of {user}" if user else ""))
        where = {p.id: (username, p.name) for p, username in found}
        experiments = await service.experiments_in(session, list(where), limit=500)
        counts = await service.progress(session, [e.id for e in experiments])
    table = Table(
        "id", "owner", "project", "name", "status", "completed", "failed", "pending", "created"
    )
    for e in experiments:
        c = counts[e.id]
        table.add_row(
            str(e.id),
            *where[e.project_id],
            e.name,
            e.current_status,
            str(c["completed"]),
            str(c["failed"]),
            str(c["pending"]),
            f"{e.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


def export_command(
    experiment_id: uuid.UUID = typer.Argument(...),
    format: str = typer.Option("json", "--format", "-f", help="json, env, yaml or md."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
    top_n: int = typer.Option(5, "--top-n", min=1, max=100, help="Configs in the md report."),
) -> None:
    """Export an experiment's best config (json, env, yaml) or its markdown report (md)."""
    import asyncio

    if format not in FORMATS:
        raise Invalid(f"--format must be one of {', '.join(FORMATS)}")
    text = asyncio.run(_render(load_settings(), experiment_id, format, top_n))
    if output is None:
        sys.stdout.write(text)
    else:
        write_text(output, text)
        err_console.print(f"wrote {output}")


async def _render(settings: Settings, experiment_id: uuid.UUID, format: str, top_n: int) -> str:
    import json

    from promptlooper.sweeps import export, service
    from promptlooper.sweeps.search import store as search_store

    async with session_scope(settings) as session:
        experiment = await service.get_experiment(
            session, Principal.local_operator(), experiment_id
        )
        summary = await service.summary(session, experiment)
        eliminated = await search_store.eliminated(session, experiment.id, summary)
    if format == "md":
        return export.render_report(experiment, summary, top_n, eliminated=eliminated)
    best = export.best_config(experiment.id, experiment.name, summary)
    if format == "json":
        return json.dumps(best, indent=2) + "\n"
    return export.render_env(best) if format == "env" else export.render_yaml(best)


def write_exports(settings: Settings, experiment_id: uuid.UUID, folder: Path) -> list[Path]:
    """All four exports of an experiment into ``folder``; returns the files written."""
    import asyncio

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for format in FORMATS:
        path = folder / f"best.{format}" if format != "md" else folder / "report.md"
        write_text(path, asyncio.run(_render(settings, experiment_id, format, 5)))
        written.append(path)
    return written


ProjectOption = typer.Option(None, "--project", help="One project of --user (default: all).")
UserOption = typer.Option(None, "--user", help="Whose projects (default: the built-in admin).")
AllOption = typer.Option(False, "--all", help="Every project of every user.")


async def _cache_scope(
    session: AsyncSession, project: str | None, user: str | None, everything: bool
) -> tuple[list[uuid.UUID] | None, str]:
    """The projects a cache command is about, and how to name them."""
    from promptlooper.projects import service as projects

    if everything:
        if project is not None or user is not None:
            raise Invalid("--all: give --all, or --project/--user, not both")
        return None, "all projects"
    principal = await principal_for(session, user)
    if project is not None:
        found = await project_of(session, principal, project)
        return [found.id], f"project {project} of {principal.username}"
    return await projects.owned_project_ids(session, principal), f"projects of {principal.username}"


@cache_app.command("stats")
@async_command
async def cache_stats(
    project: str | None = ProjectOption, user: str | None = UserOption, everything: bool = AllOption
) -> None:
    """Cached responses of your projects (or one, or all), and the cache's size and bound."""
    from rich.filesize import decimal

    from promptlooper.sweeps import service
    from promptlooper.sweeps.store import CacheBound

    settings = load_settings()
    async with session_scope(settings) as session:
        scope, named = await _cache_scope(session, project, user, everything)
        stats = await service.cache_stats(session, scope, CacheBound.from_settings(settings))
    bound_entries = stats["max_entries"] or "no limit"
    bound_bytes = decimal(stats["max_bytes"]) if stats["max_bytes"] else "no limit"
    console.print(
        f"{named}: {stats['entries']} entries, {decimal(stats['bytes'] or 0)}, "
        f"{stats['hits']} hits",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"whole cache: {stats['total_entries']} of {bound_entries} entries, "
        f"{decimal(stats['total_bytes'] or 0)} of {bound_bytes}",
        highlight=False,
        soft_wrap=True,
    )


@cache_app.command("clear")
@async_command
async def cache_clear(
    project: str | None = ProjectOption, user: str | None = UserOption, everything: bool = AllOption
) -> None:
    """Delete the cached responses of your projects (or one, or with --all every one)."""
    from promptlooper.sweeps import service

    async with session_scope(load_settings()) as session:
        scope, named = await _cache_scope(session, project, user, everything)
        removed = await service.clear_cache(session, scope)
    console.print(f"removed {removed} cached responses ({named})", highlight=False)
