"""Results of an online experiment: the seed's per-variant counts, statistics against
control, and the experiment's health, all read from the running totals ingestion keeps
(``online/tallies.py``), so they cost the same with ten events or ten million. Kept apart from
the registry service because the statistics need SciPy, which every other caller of the
service should not pay to import."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.online import definitions, history, stats
from promptlooper.online.models import (
    ExperimentTotals,
    MetricDefinition,
    MetricTotals,
    OnlineExperiment,
    Rejection,
    VariantTotals,
)
from promptlooper.online.service import get_experiment
from promptlooper.online.tallies import (
    EVENT_COUNTS,
    MOMENTS,
    PERFORMANCE,
    TOTALS,
    covariate_terms,
    ratio_source,
)


async def variant_counts(session: AsyncSession, key: str) -> dict[str, dict[str, float]]:
    """Per variant, from the running totals: event counts, sessions, exposed (with an
    impression) and converting sessions, and the sum and sum of squares of value per exposed
    session."""
    return (await variant_counts_of(session, [key]))[key]


async def variant_counts_of(
    session: AsyncSession, keys: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """``variant_counts`` of several experiments in one query."""
    counts: dict[str, dict[str, dict[str, float]]] = {key: {} for key in keys}
    found = await session.scalars(
        select(VariantTotals).where(VariantTotals.experiment_key.in_(list(keys)))
    )
    for row in found:
        counts[row.experiment_key][row.variant_key] = {n: float(getattr(row, n)) for n in TOTALS}
    return counts


async def rejection_counts(session: AsyncSession, key: str) -> dict[str, int]:
    rows = await session.execute(
        select(Rejection.reason, Rejection.count).where(Rejection.experiment_key == key)
    )
    return {reason: int(count) for reason, count in rows.all()}


def seed_fields(variant_key: str, counts: dict[str, float] | None) -> dict[str, Any]:
    """The seed's per-variant result fields; conversion rate = converting exposed sessions
    over exposed sessions."""
    c = counts or {}
    exposed = c.get("exposed", 0.0)
    return {
        "variant_key": variant_key,
        **{name: int(c.get(name, 0)) for name in EVENT_COUNTS.values()},
        "unique_sessions": int(c.get("unique_sessions", 0)),
        "conversion_rate": c.get("converting", 0.0) / exposed if exposed else 0.0,
        "conversion_value_total": float(c.get("value_total", 0.0)),
    }


def arm_fields(variant_key: str, counts: dict[str, float] | None) -> dict[str, Any]:
    """The seed's fields, and what the statistics are computed over: exposed sessions and
    the value per exposed session."""
    c = counts or {}
    exposed = c.get("exposed", 0.0)
    return seed_fields(variant_key, counts) | {
        "exposed": int(exposed),
        "value_per_session": c.get("value_exposed", 0.0) / exposed if exposed else 0.0,
    }


MIN_UNITS = 100
"""Units each arm needs before the results call a winner."""
EXPOSED, SERVED, EITHER = "exposed sessions", "units served", "units exposed or served"
"""What an experiment's units are (``measured_on``): sessions exposed by an impression, the
units its performance records served, or either (each unit once)."""


def measured_on(metric: MetricDefinition | None) -> str:
    """The units a metric (a built-in one: None) is measured on: the units exposed or served
    for a cross-source ratio, the units performance records served for another performance
    metric, else sessions exposed by an impression. An experiment's units are its primary
    metric's, so one over agent variants fed only by performance records (no impression at
    all) still gathers units, and the health counts what the primary's statistics count."""
    term = history.units_term(metric)
    if term is None:
        return EXPOSED
    return SERVED if term == history.SERVED_UNITS else EITHER


def units(counts: dict[str, float], terms: dict[str, float], term: str | None) -> int:
    """One arm's units: its ``term`` (``history.units_term``), else its exposed sessions."""
    return int(terms.get(term, 0.0) if term is not None else counts.get("exposed", 0))


SRM_THRESHOLD = 0.001


async def multiple_exposure(session: AsyncSession, key: str) -> tuple[int, int]:
    """Sessions seen in more than one variant, and sessions in all."""
    totals = await session.get(ExperimentTotals, key)
    return (totals.multiple, totals.sessions) if totals else (0, 0)


@dataclass(frozen=True, slots=True)
class _Split:
    srm_p_value: float
    srm_mismatch: bool
    shortfall: int
    """Units the smallest arm still needs before the results call a winner."""


def _split(
    experiment: OnlineExperiment, per_arm: Sequence[int], changes: Sequence[Any] = ()
) -> _Split:
    """How the units (``units``) fell across the arms against the shares that were in force
    while they arrived (the allocations, unless a bandit ``changes`` them)."""
    expected = history.expected_shares(experiment, changes, sum(per_arm))
    srm = stats.srm_p_value(per_arm, expected)
    return _Split(srm, srm < SRM_THRESHOLD, max(0, MIN_UNITS - min(per_arm)))


def arm_metrics(counts: dict[str, float]) -> dict[str, stats.Moments]:
    exposed = int(counts.get("exposed", 0))
    return {
        "conversion_rate": stats.Moments.binary(exposed, counts.get("converting", 0.0)),
        "value_per_session": stats.Moments(
            exposed, counts.get("value_exposed", 0.0), counts.get("value_squares", 0.0)
        ),
    }


def _adjust(blocks: list[dict[str, Any]], correction: str) -> dict[str, Any]:
    """Adjust every frequentist p-value for the number of comparisons made; the family:
    how many tests it holds (the comparisons that could be made: one without data, as an
    ``error``, tests nothing) and the correction. A family of one gives each test its own
    p-value as the adjusted one, so every valid comparison has one to show."""
    tested = [b for b in blocks if "frequentist" in b]
    raw = [b["frequentist"]["p_value"] for b in tested]
    adjusted = stats.holm(raw) if correction == "holm" else stats.benjamini_hochberg(raw)
    for block, value in zip(tested, adjusted, strict=True):
        block["frequentist"]["p_value_adjusted"] = value
        block["frequentist"]["correction"] = correction
    return {"tests": len(tested), "comparisons": len(blocks), "correction": correction}


def source_of(metric: MetricDefinition) -> str:
    """What a defined metric's terms are named after (``<source>:v``): a cross-source ratio's
    id, a performance field behind its prefix, else its event name."""
    if metric.denominator_kind is not None:
        return ratio_source(metric.id)
    return PERFORMANCE + metric.source if metric.kind == "performance" else metric.source


def defined_metric(
    metric: MetricDefinition, counts: dict[str, float], terms: dict[str, float]
) -> stats.Statistic:
    """A defined metric of one arm, over its exposed sessions (a performance metric: its units
    served; a cross-source ratio: its units exposed or served), from its source's terms
    (``tallies.terms``); a CUPED metric with its pre-exposure covariate over its window, θ
    still unset (``compared`` pools it over both arms)."""
    source, term_of_units = source_of(metric), history.units_term(metric)
    n = int(terms.get(term_of_units, 0) if term_of_units else counts.get("exposed", 0))
    term = {t: terms.get(f"{source}:{t}", 0.0) for t in MOMENTS}
    if metric.aggregation == "proportion":
        return stats.Moments.binary(n, term["units"])
    values = stats.Moments(n, term["v"], term["vv"])
    if metric.aggregation == "mean":
        if metric.cuped and metric.cuped_window_days is not None:
            p, pp, vp = (
                terms.get(name, 0.0) for name in covariate_terms(source, metric.cuped_window_days)
            )
            return stats.Adjusted(values, stats.Moments(n, p, pp), vp)
        return values
    return stats.Ratio(values, stats.Moments(n, term["n"], term["nn"]), term["nv"])


def compared(
    metric: MetricDefinition,
    control: tuple[dict[str, float], dict[str, float]],
    treatment: tuple[dict[str, float], dict[str, float]],
) -> tuple[stats.Statistic, stats.Statistic]:
    """A defined metric of control and of a treatment, each arm given as its counts and terms,
    as the two are compared: a CUPED metric's with θ pooled over both arms."""
    a, b = defined_metric(metric, *control), defined_metric(metric, *treatment)
    if isinstance(a, stats.Adjusted) and isinstance(b, stats.Adjusted):
        return stats.cuped(a, b)
    return a, b


def compare_defined(
    metric: MetricDefinition,
    control: tuple[dict[str, float], dict[str, float]],
    treatment: tuple[dict[str, float], dict[str, float]],
    *,
    proper_prior: bool = False,
) -> dict[str, Any]:
    """One defined metric of a treatment against control, each arm given as its counts and
    terms. A CUPED metric's lift is adjusted, its means are not; its ``cuped`` block says by
    how much the covariate (over its window of days) shrank the lift's variance (the share
    removed), what the lift was before, and the adjusted means."""
    a, b = compared(metric, control, treatment)
    inverse = metric.direction == "lower"
    found = stats.compare(a, b, proper_prior=proper_prior, inverse=inverse)
    if not (isinstance(a, stats.Adjusted) and isinstance(b, stats.Adjusted)):
        return found
    adjusted, unadjusted = stats.effect(a, b), stats.effect(a.post, b.post)
    removed = None
    if adjusted is not None and unadjusted is not None:
        removed = 1 - adjusted.variance / unadjusted.variance
    # The means as the units spent them, as GrowthBook shows them; the lift is adjusted. The
    # adjusted means are centred on the pooled covariate's mean (each arm's mean had both
    # arms' units behaved alike before exposure): post − θ·pre alone is a number on no scale
    # a reader knows, though its difference between the arms is the same.
    centre = a.theta * (a.pre + b.pre).mean
    return found | {
        "control_mean": a.unadjusted_mean,
        "treatment_mean": b.unadjusted_mean,
        "cuped": {
            "window_days": metric.cuped_window_days,
            "control_mean_adjusted": a.mean + centre,
            "treatment_mean_adjusted": b.mean + centre,
            "theta": a.theta,
            "variance_removed": removed,
            "unadjusted_relative_lift": unadjusted.estimate if unadjusted else None,
        },
    }


def breach(
    control: stats.Statistic, treatment: stats.Statistic, threshold: float, scale: str
) -> dict[str, Any] | None:
    """The numbers of a breach of a guardrail's ``threshold`` by the treatment, or None when
    the sequential interval does not lie wholly past it (or there is not enough data): the
    test ``guardrails.check`` stops an arm on, and the one the results flag an arm resumed by
    hand with."""
    found = stats.effect(control, treatment, relative=scale == "relative")
    if found is None:
        return None
    test = stats.sequential(found, control.n + treatment.n)
    low, high = test["ci"]
    if (threshold > 0 and low > threshold) or (threshold < 0 and high < threshold):
        return {
            "threshold": threshold,
            "scale": scale,
            "lift": found.estimate,
            "ci": [low, high],
            "p_value": test["p_value"],
            "control_mean": control.mean,
            "treatment_mean": treatment.mean,
            "units": [control.n, treatment.n],
        }
    return None


def arm_breach(
    metrics: dict[str, MetricDefinition],
    rules: dict[str, dict[str, Any]],
    control: tuple[dict[str, float], dict[str, float]],
    treatment: tuple[dict[str, float], dict[str, float]],
) -> tuple[str, dict[str, Any]] | None:
    """The first guardrail (by name in ``rules``) the treatment arm is past, with its
    numbers; each arm given as its counts and terms."""
    for name, rule in rules.items():
        metric = metrics.get(name)
        if metric is None:
            continue
        found = breach(
            defined_metric(metric, *control),
            defined_metric(metric, *treatment),
            rule["threshold"],
            rule.get("scale", "relative"),
        )
        if found is not None:
            return name, found
    return None


async def metric_terms(session: AsyncSession, key: str) -> dict[str, dict[str, float]]:
    """Per variant, the defined metrics' running terms."""
    rows = await session.execute(
        select(MetricTotals.variant_key, MetricTotals.term, MetricTotals.value).where(
            MetricTotals.experiment_key == key
        )
    )
    found: dict[str, dict[str, float]] = {}
    for variant, term, value in rows.all():
        found.setdefault(variant, {})[term] = value
    return found


async def _named_metrics(
    session: AsyncSession, experiment: OnlineExperiment
) -> list[tuple[str, MetricDefinition]]:
    """The defined metrics the experiment names, each with its role, primary first; the
    built-in event types it names are what ``stats`` already reports."""
    names = definitions.named(experiment)
    found = {
        m.name: m
        for m in await session.scalars(
            select(MetricDefinition).where(MetricDefinition.name.in_(names))
        )
    }
    roles = {experiment.primary_metric: "primary"}
    for name in experiment.guardrail_metrics:
        roles.setdefault(name, "guardrail")
    return [(roles.get(n, "secondary"), found[n]) for n in names if n in found]


async def compute(
    session: AsyncSession,
    keys: Sequence[str],
    *,
    correction: str = "holm",
    proper_prior: bool = False,
) -> list[dict[str, Any]]:
    """Per experiment: the seed's fields per variant (control first), a ``stats`` block for
    each treatment against control (conversion rate and value per exposed session), a
    ``metrics`` block for the defined metrics the experiment names, and the experiment's
    health. Every p-value is adjusted across all of a page's comparisons."""
    answer = []
    for key in keys:
        experiment = await get_experiment(session, key)
        counts = await variant_counts(session, key)
        arms = [counts.get(v["variant_key"], {}) for v in experiment.variants]
        named = await _named_metrics(session, experiment)
        terms = await metric_terms(session, key) if named else {}
        primary = next((m for role, m in named if role == "primary"), None)
        on, term = measured_on(primary), history.units_term(primary)
        per_arm = [units(a, terms.get(v["variant_key"], {}), term)
                   for v, a in zip(experiment.variants, arms, strict=True)]  # fmt: skip
        control = arm_metrics(arms[0])
        control_key = experiment.variants[0]["variant_key"]
        variants = [arm_fields(control_key, arms[0])]
        blocks: list[dict[str, Any]] = []
        for definition, arm in zip(experiment.variants[1:], arms[1:], strict=True):
            treatment = arm_metrics(arm)
            compared = {
                m: stats.compare(control[m], treatment[m], proper_prior=proper_prior)
                for m in control
            }
            blocks.extend(compared.values())
            defined = {}
            for role, metric in named:
                found = compare_defined(
                    metric,
                    (arms[0], terms.get(control_key, {})),
                    (arm, terms.get(definition["variant_key"], {})),
                    proper_prior=proper_prior,
                )
                blocks.append(found)
                defined[metric.name] = {
                    "role": role,
                    "aggregation": metric.aggregation,
                    "direction": metric.direction,
                } | found
            fields = arm_fields(definition["variant_key"], arm) | {"stats": compared}
            variants.append(fields | ({"metrics": defined} if named else {}))
        family = _adjust(blocks, correction)
        changes = await history.changes(session, key)
        split = _split(experiment, per_arm, changes)
        rejected = await rejection_counts(session, key)
        multiple, sessions = await multiple_exposure(session, key)
        health = {
            "srm_p_value": split.srm_p_value,
            "srm_mismatch": split.srm_mismatch,
            "rejected": rejected,
            "bots_rejected": rejected.get("bot", 0),
            "multiple_exposure_rate": multiple / sessions if sessions else 0.0,
            "min_units_per_arm": MIN_UNITS,
            "units": on,
            "units_per_arm": per_arm,
            "enough_data": not split.shortfall,
        }
        found = {
            "experiment_key": key,
            "variants": variants,
            "health": health,
            "multiplicity": family,
        }
        found |= await history.summary(session, experiment, changes)
        found["guardrails"]["breaching"] = _breaching(experiment, named, arms, terms)
        answer.append(found)
    return answer


def _breaching(
    experiment: OnlineExperiment,
    named: list[tuple[str, MetricDefinition]],
    arms: list[dict[str, float]],
    terms: dict[str, dict[str, float]],
) -> dict[str, dict[str, Any]]:
    """Per treatment arm still served (not stopped: resumed by hand, or without auto-stop)
    that is past a guardrail's threshold, the guardrail and its numbers: a person who
    overruled the guardrail still needs to see that the arm breaches it."""
    rules = experiment.guardrail_thresholds or {}
    if not rules:
        return {}
    metrics = {metric.name: metric for _, metric in named}
    keys = [v["variant_key"] for v in experiment.variants]
    control = (arms[0], terms.get(keys[0], {}))
    found = {}
    for variant, arm in zip(keys[1:], arms[1:], strict=True):
        if variant in (experiment.stopped_arms or {}):
            continue
        hit = arm_breach(metrics, rules, control, (arm, terms.get(variant, {})))
        if hit is not None:
            found[variant] = {"metric": hit[0], **hit[1]}
    return found


@dataclass(frozen=True, slots=True)
class HealthSummary:
    """An experiment's health in one line, for lists of experiments (the home page)."""

    experiment_key: str
    variants: int
    sessions: int
    """Sessions seen (for an experiment measured on another kind of unit: those units)."""
    srm_p_value: float
    srm_mismatch: bool
    shortfall: int
    """Units the smallest arm still needs (0 once every arm has enough)."""
    units: str = EXPOSED

    @property
    def healthy(self) -> bool:
        return not self.srm_mismatch and not self.shortfall

    @property
    def line(self) -> str:
        """Say "2 variants · 4,812 sessions · SRM p=0.0003 — do not trust", or "no data yet",
        or "healthy" with how many more sessions each arm needs while there are too few to call
        a winner."""
        noun = "sessions" if self.units == EXPOSED else self.units
        head = f"{self.variants} variants · {self.sessions:,} {noun} · "
        if self.srm_mismatch:
            p = "p<0.0001" if self.srm_p_value < 0.0001 else f"p={self.srm_p_value:.4f}"
            return head + f"SRM {p} — do not trust"
        if not self.sessions:
            return head + f"no data yet · needs {self.shortfall:,} {noun} per arm"
        if self.shortfall:
            return head + f"healthy · needs {self.shortfall:,} more {noun} per arm"
        return head + "healthy · enough data"


async def health_summaries(
    session: AsyncSession, experiments: Sequence[OnlineExperiment]
) -> dict[str, HealthSummary]:
    """Each experiment's health summary from the running totals, in a few queries however many
    experiments there are (two more when some primary metric is not a built-in one)."""
    keys = [e.experiment_key for e in experiments]
    if not keys:
        return {}
    counts = await variant_counts_of(session, keys)
    measured = await _primary_units_of(session, experiments)
    changes = await history.changes_of(session, keys)
    found = await session.execute(
        select(ExperimentTotals.experiment_key, ExperimentTotals.sessions).where(
            ExperimentTotals.experiment_key.in_(keys)
        )
    )
    sessions = {key: int(n) for key, n in found}
    answer = {}
    for experiment in experiments:
        key = experiment.experiment_key
        primary, arm_terms = measured.get(key, (None, {}))
        on, term = measured_on(primary), history.units_term(primary)
        per_arm = [
            units(counts[key].get(v["variant_key"], {}), arm_terms.get(v["variant_key"], {}), term)
            for v in experiment.variants
        ]
        split = _split(experiment, per_arm, changes[key])
        answer[key] = HealthSummary(
            experiment_key=key,
            variants=len(experiment.variants),
            sessions=sum(per_arm) if on != EXPOSED else sessions.get(key, 0),
            srm_p_value=split.srm_p_value,
            srm_mismatch=split.srm_mismatch,
            shortfall=split.shortfall,
            units=on,
        )
    return answer


async def _primary_units_of(
    session: AsyncSession, experiments: Sequence[OnlineExperiment]
) -> dict[str, tuple[MetricDefinition, dict[str, dict[str, float]]]]:
    """Of the experiments whose primary metric counts units by a running term rather than
    the exposed sessions (``history.units_term``), the primary and per variant that term,
    keyed as ``metric_terms``, in two queries however many experiments there are."""
    primaries = {e.primary_metric for e in experiments} - set(EVENT_COUNTS)
    if not primaries:
        return {}
    defined = {
        m.name: m
        for m in await session.scalars(
            select(MetricDefinition).where(MetricDefinition.name.in_(primaries))
        )
        if history.units_term(m) is not None
    }
    found: dict[str, tuple[MetricDefinition, dict[str, dict[str, float]]]] = {
        e.experiment_key: (defined[e.primary_metric], {})
        for e in experiments
        if e.primary_metric in defined
    }
    if not found:
        return {}
    wanted = {key: history.units_term(metric) for key, (metric, _) in found.items()}
    rows = await session.execute(
        select(
            MetricTotals.experiment_key, MetricTotals.variant_key, MetricTotals.term,
            MetricTotals.value,
        ).where(
            MetricTotals.experiment_key.in_(list(wanted)),
            MetricTotals.term.in_(set(wanted.values())),
        )
    )  # fmt: skip
    for key, variant, term, value in rows.all():
        if wanted[key] == term:
            found[key][1][variant] = {term: value}
    return found
