"""``promptlooper online``: the A/B registry and its results from the terminal.

Works on ``DATABASE_URL`` directly, like the other commands. Definitions are YAML or JSON
files with the same fields as the admin API's bodies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from promptlooper.cli.common import async_command, console, load_settings, session_scope
from promptlooper.errors import Invalid, problem_message
from promptlooper.files import read_text
from promptlooper.online import display

online_app = typer.Typer(help="Online A/B experiments: registry and results.", no_args_is_help=True)
FILE = typer.Argument(..., help="Definition file (YAML or JSON), as the admin API's body.")


def _definition(path: Path, model: Any) -> Any:
    import yaml
    from pydantic import ValidationError

    text = read_text(path)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Invalid(f"{path.name}: not valid YAML/JSON") from exc
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        where = f"{path.name}: {field}: " if field else f"{path.name}: "
        raise Invalid(where + problem_message(first)) from exc


def _summary(experiment: Any) -> str:
    split = "/".join(f"{v['variant_key']}={v['allocation']:g}%" for v in experiment.variants)
    return f"{experiment.experiment_key}: {experiment.status}, {split}"


@online_app.command("create")
@async_command
async def create(file: Path = FILE) -> None:
    """Register an experiment from a definition file (with experiment_key)."""
    from promptlooper.online import service
    from promptlooper.online.schemas import ExperimentCreate
    from promptlooper.variants.service import existing_variant_ids

    body = _definition(file, ExperimentCreate)
    async with session_scope(load_settings()) as session:
        experiment = await service.create_experiment(session, body, existing_variant_ids)
    console.print(f"created {_summary(experiment)}")


@online_app.command("update")
@async_command
async def update(key: str = typer.Argument(...), file: Path = FILE) -> None:
    """Replace an experiment's definition (the hash seed stays unless the file sets one);
    the file ``online create`` took, or what ``online show`` printed, edited, will do."""
    from promptlooper.online import service
    from promptlooper.online.schemas import ExperimentUpdate
    from promptlooper.variants.service import existing_variant_ids

    body = _definition(file, ExperimentUpdate)
    async with session_scope(load_settings()) as session:
        experiment = await service.update_experiment(session, key, body, existing_variant_ids)
    console.print(f"updated {_summary(experiment)}")


@online_app.command("list")
@async_command
async def list_experiments(archived: bool = typer.Option(False, "--archived")) -> None:
    """The registry, in creation order."""
    from promptlooper.online import service

    async with session_scope(load_settings()) as session:
        found = await service.list_experiments(session, include_archived=archived)
    table = Table("key", "status", "enabled", "coverage", "variants", "routes")
    for e in found:
        table.add_row(
            e.experiment_key,
            e.status + (" (archived)" if e.archived_at else ""),
            "yes" if e.enabled else "no",
            f"{e.coverage:g}%",
            ", ".join(f"{v['variant_key']} {v['allocation']:g}%" for v in e.variants),
            " ".join(e.eligible_routes) or "all",
        )
    console.print(table)


@online_app.command("show")
@async_command
async def show(key: str = typer.Argument(...)) -> None:
    """One experiment's definition, as JSON."""
    from promptlooper.online import service
    from promptlooper.online.schemas import ExperimentAdmin

    async with session_scope(load_settings()) as session:
        experiment = await service.get_experiment(session, key)
        body = ExperimentAdmin.model_validate(experiment).model_dump(mode="json")
    console.print_json(json.dumps(body))


@online_app.command("stop")
@async_command
async def stop(key: str = typer.Argument(...)) -> None:
    """Stop assigning and ingesting (``online start`` resumes)."""
    from promptlooper.online import service

    async with session_scope(load_settings()) as session:
        experiment = await service.set_status(session, key, "stopped")
    console.print(f"stopped {_summary(experiment)}")


@online_app.command("start")
@async_command
async def start(key: str = typer.Argument(...)) -> None:
    """Assign and ingest again."""
    from promptlooper.online import service

    async with session_scope(load_settings()) as session:
        experiment = await service.set_status(session, key, "running")
    console.print(f"started {_summary(experiment)}")


@online_app.command("results")
@async_command
async def results(
    key: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON."),
    prior: str = typer.Option("flat", help="Bayesian prior on the lift: flat or proper."),
) -> None:
    """Per-variant counts, lift against control with p-values and chance to win, the defined
    metrics the experiment names (CUPED ones with the variance removed), each promoted arm's
    sweep score and predicted lift, health."""
    from promptlooper.online import offline, service
    from promptlooper.online import results as outcomes
    from promptlooper.variants.offline import sweep_scores

    if prior not in ("flat", "proper"):
        raise Invalid(f"--prior: flat or proper, not {prior!r}")
    async with session_scope(load_settings()) as session:
        (found,) = await outcomes.compute(session, [key], proper_prior=prior == "proper")
        experiment = await service.get_experiment(session, key)
        await offline.attach(session, experiment, found, sweep_scores)
    if as_json:
        console.print_json(json.dumps(found))
        return
    tables = [_conversion_table(key, found), _defined_table(key, found)]
    if display.primary_is_defined(found["variants"]):
        tables.reverse()
    for table in tables:
        if table is not None:
            console.print(table)
    family = found["multiplicity"]
    correction = display.CORRECTIONS[family["correction"]] if family["tests"] > 1 else ""
    console.print(
        f"p adj.: {display.family(family)}" + (f" ({correction})" if correction else ""),
        soft_wrap=True,
    )
    for line in _notes(found["variants"]):
        console.print(line, soft_wrap=True)
    health = found["health"]
    console.print(
        f"SRM p={health['srm_p_value']:.4g}{' MISMATCH' if health['srm_mismatch'] else ''}  "
        f"bots rejected {health['bots_rejected']}  "
        f"multiple exposure {health['multiple_exposure_rate']:.2%}  "
        + (
            "enough data"
            if health["enough_data"]
            else f"not enough data yet: the smallest arm has {min(health['units_per_arm']):,} "
            f"{health['units']} of {health['min_units_per_arm']:,}"
        ),
        soft_wrap=True,
    )
    for line in _traffic_lines(found):
        console.print(line, soft_wrap=True)


def _conversion_table(key: str, found: dict[str, Any]) -> Table:
    table = Table("variant", "impressions→conversions", "rate", "lift", "95% CI", "p", "p adj.",
                  "chance to win", title=f"{key}: conversion rate")  # fmt: skip
    for variant in found["variants"]:
        row = _row(variant.get("stats", {}).get("conversion_rate"))
        table.add_row(
            variant["variant_key"],
            f"{variant['impressions']}→{variant['conversions']}",
            f"{variant['conversion_rate']:.2%}",
            *row,
        )
    return table


def _defined_table(key: str, found: dict[str, Any]) -> Table | None:
    """The defined metrics per treatment, primary first; None when none are named."""
    treatments = [v for v in found["variants"][1:] if v.get("metrics")]
    if not treatments:
        return None
    table = Table("variant", "metric", "role", "control → variant", "lift", "95% CI", "p",
                  "p adj.", "chance to win", title=f"{key}: defined metrics")  # fmt: skip
    for variant in treatments:
        for name, block in variant["metrics"].items():
            means = (
                f"{display.mean(block['control_mean'])} → {display.mean(block['treatment_mean'])}"
            )
            role = block["role"] + (" (lower is better)" if block["direction"] == "lower" else "")
            table.add_row(variant["variant_key"], name, role, means, *_row(block))
    return table


@online_app.command("check")
@async_command
async def check(key: str = typer.Argument(...)) -> None:
    """Run the experiment's guardrail check and bandit schedule now (the server does it
    every ONLINE_UPKEEP_SECONDS): stop an arm past its guardrail, update a bandit's weights
    when due."""
    from promptlooper.online import service, upkeep

    async with session_scope(load_settings()) as session:
        experiment = await service.get_experiment(session, key)  # an unknown key: exit code 2
        if not service.is_live(experiment):
            console.print(f"{key}: not live (only a running, enabled experiment is checked)")
            return
        done = await upkeep.check(session, key)
    console.print("\n".join(done) if done else f"{key}: nothing to do")


@online_app.command("resume-arm")
@async_command
async def resume_arm(key: str = typer.Argument(...), variant: str = typer.Argument(...)) -> None:
    """Serve an arm a guardrail stopped its own variant again (audited; the guardrail does
    not stop it again)."""
    from promptlooper.online import guardrails

    async with session_scope(load_settings()) as session:
        await guardrails.resume(session, key, variant, "cli")
    console.print(f"resumed arm {variant} of {key}")


def _traffic_lines(found: dict[str, Any]) -> list[str]:
    """Stopped arms and the traffic shares in force, for the results' text output."""
    lines = []
    for arm, why in found.get("guardrails", {}).get("stopped_arms", {}).items():
        low, high = why["ci"]
        lines.append(
            f"STOPPED {arm}: {why['metric']} lift {why['lift']:+.1%} "
            f"(sequential CI {low:+.1%} … {high:+.1%}, threshold {why['threshold']:+g} "
            f"{why['scale']}) at {why['at']}; its units are served the control"
        )
    for arm, why in found.get("guardrails", {}).get("breaching", {}).items():
        low, high = why["ci"]
        lines.append(
            f"BREACHING {arm}: {why['metric']} lift {why['lift']:+.1%} "
            f"(sequential CI {low:+.1%} … {high:+.1%}, threshold {why['threshold']:+g} "
            f"{why['scale']}); its units still see it"
        )
    traffic = found.get("traffic", {})
    if traffic.get("history"):
        shares = ", ".join(f"{k}={w:.1%}" for k, w in traffic["shares"].items())
        lines.append(f"traffic in force: {shares} ({len(traffic['history'])} changes)")
    return lines


def _notes(variants: list[dict[str, Any]]) -> list[str]:
    """One line per CUPED metric of a treatment (what the covariate removed), and per arm
    promoted from a sweep (its score; a treatment's predicted beside its observed lift)."""
    lines = []
    for variant in variants:
        for name, block in (variant.get("metrics") or {}).items():
            if cuped := block.get("cuped"):
                removed, before = cuped["variance_removed"], cuped["unadjusted_relative_lift"]
                lines.append(
                    f"{variant['variant_key']} {name}: CUPED (θ = {cuped['theta']:.3g}) removed "
                    + ("n/a" if removed is None else f"{removed:.0%}")
                    + " of the lift's variance; unadjusted lift "
                    + ("n/a" if before is None else f"{before:+.1%}")
                )
        if offline := variant.get("offline"):
            line = (
                f"{variant['variant_key']}: sweep {offline['sweep_name'] or offline['sweep_id']} "
                f"score {offline['score']:.4g}"
            )
            if "predicted_lift" in offline:
                predicted, observed = offline["predicted_lift"], offline["observed_lift"]
                line += (
                    f"; offline predicted {'n/a' if predicted is None else f'{predicted:+.1%}'}"
                    f" on {offline['metric']}, observed "
                    f"{'n/a' if observed is None else f'{observed:+.1%}'}"
                )
            lines.append(line)
    return lines


def _row(block: dict[str, Any] | None) -> list[str]:
    if block is None:
        return ["control", "", "", "", ""]
    if "error" in block:
        return ["n/a", "", "", "", ""]
    low, high = block["frequentist"]["ci"]
    adjusted = block["frequentist"].get("p_value_adjusted")
    return [
        f"{block['relative_lift']:+.1%}",
        f"{low:+.1%} … {high:+.1%}",
        f"{block['frequentist']['p_value']:.3g}",
        "" if adjusted is None else f"{adjusted:.3g}",
        display.chance(block["bayesian"]["chance_to_beat_control"]),
    ]


@online_app.command("metric-create")
@async_command
async def metric_create(file: Path = FILE) -> None:
    """Define a metric from a file (name, source, aggregation, denominator, direction,
    cuped, cuped_window_days)."""
    import promptlooper.projects.models  # noqa: F401  (the table a metric's project_id names)
    from promptlooper.online import definitions
    from promptlooper.online.schemas import MetricCreate

    body = _definition(file, MetricCreate)
    async with session_scope(load_settings()) as session:
        metric = await definitions.create_metric(session, body)
    what = "events" if metric.kind == "event" else "per call"
    if metric.denominator_kind is not None:
        what = f"per {metric.denominator!r} ({metric.denominator_kind}), units exposed or served"
    adjusted = ""
    if metric.cuped:
        adjusted = f", CUPED-adjusted over the {metric.cuped_window_days} days before exposure"
    console.print(
        f"defined {metric.name}: {metric.aggregation} of {metric.source!r} {what}{adjusted}"
    )


@online_app.command("metrics")
@async_command
async def metrics() -> None:
    """The defined metrics."""
    from promptlooper.online import definitions

    async with session_scope(load_settings()) as session:
        found = await definitions.list_metrics(session)
    table = Table("name", "kind", "source", "aggregation", "direction", "project")
    for m in found:
        scope = str(m.project_id or "site")
        aggregation = m.aggregation + (f" (CUPED, {m.cuped_window_days} d)" if m.cuped else "")
        if m.denominator_kind is not None:
            aggregation += f" per {m.denominator} ({m.denominator_kind})"
        table.add_row(m.name, m.kind, m.source, aggregation, m.direction, scope)
    console.print(table)


@online_app.command("metric-delete")
@async_command
async def metric_delete(name: str = typer.Argument(...)) -> None:
    """Delete a metric no experiment names."""
    from promptlooper.online import definitions

    async with session_scope(load_settings()) as session:
        await definitions.delete_metric(session, name)
    console.print(f"deleted {name}")


@online_app.command("power")
@async_command
async def power(
    key: str | None = typer.Argument(None, help="A running experiment; leave out to plan."),
    lift: float | None = typer.Option(None, help="Relative lift to detect, 0.05 = +5 %."),
    metric: str | None = typer.Option(None, help="Default: the primary metric."),
    baseline: float | None = typer.Option(None, help="Planning: the control mean."),
    variance: float | None = typer.Option(None, help="Planning: per-unit variance."),
    units_per_day: float | None = typer.Option(None, help="Planning: all arms' traffic."),
    arms: int = typer.Option(2, min=2),
    days: int | None = typer.Option(None, min=1, help="Planning: how long it may run."),
) -> None:
    """The power a running experiment reached and its days left, or plan one: the lift
    detectable in --days, or the days --lift needs."""
    from promptlooper.online import power as estimates

    if key is not None:
        estimates.check_running(
            baseline=baseline, variance=variance, units_per_day=units_per_day, days=days
        )
        async with session_scope(load_settings()) as session:
            found = await estimates.reached(
                session, key, lift=0.05 if lift is None else lift, metric=metric
            )
        console.print_json(json.dumps(found))
        return
    if baseline is None or units_per_day is None or (days is None and lift is None):
        raise Invalid("--baseline, --units-per-day and --days or --lift plan an experiment")
    found = estimates.planned(baseline, variance, units_per_day, arms=arms, days=days, lift=lift)
    console.print_json(json.dumps(found))
