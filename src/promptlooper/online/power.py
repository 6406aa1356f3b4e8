"""Power and duration: how small a lift an experiment can detect, how long it needs for a
given lift, and for a running experiment the power reached and the days left at its traffic.

The numbers come from ``stats.power`` on a metric's control mean and per-unit variance: for a
planned experiment the caller gives them (a conversion rate's variance is p(1 − p)); for a
running one they are read from the running totals the results use, with the traffic per arm
and day measured since the first exposure.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.errors import FieldInvalid
from promptlooper.online import definitions, history, results, stats
from promptlooper.online.models import DailyTotals
from promptlooper.online.schemas import MAX_RELATIVE
from promptlooper.online.service import get_experiment

BUILT_IN = {"conversion": "conversion_rate", "conversion_rate": "conversion_rate"}
BUILT_IN["value_per_session"] = "value_per_session"


MAX_UNITS_PER_DAY = 1e12
"""More traffic a day than any site has: past it, units × days would leave a float's range."""


def planned(
    baseline: float | None,
    variance: float | None,
    units_per_day: float | None,
    *,
    arms: int = 2,
    days: int | None = None,
    lift: float | None = None,
) -> dict[str, Any]:
    """``plan`` from what a user gave (the API's query, the CLI's options), each input checked
    first: a missing, non-finite or out-of-range one is ``Invalid`` naming it. A rate's
    variance is known, p(1 − p); any other baseline needs its ``variance``."""
    if baseline is None or baseline == 0:
        raise FieldInvalid(
            "baseline", "give the control mean (non-zero), or an experiment_key", source="query"
        )
    if not math.isfinite(baseline):
        raise FieldInvalid("baseline", "must be a finite number", source="query")
    if units_per_day is None:
        raise FieldInvalid(
            "units_per_day", "give the expected traffic of all arms together", source="query"
        )
    if not 0 < units_per_day <= MAX_UNITS_PER_DAY:  # NaN fails this too
        raise FieldInvalid(
            "units_per_day", f"must be above 0 and at most {MAX_UNITS_PER_DAY:.0e}", source="query"
        )
    if variance is None:
        if not 0 < baseline < 1:
            raise FieldInvalid(
                "variance", "needed unless baseline is a rate between 0 and 1", source="query"
            )
        variance = baseline * (1 - baseline)
    if not 0 < variance < math.inf:
        raise FieldInvalid("variance", "must be a finite number above 0", source="query")
    if lift is not None:
        check_lift(lift)
    if days is None and lift is None:
        raise FieldInvalid(
            "days",
            "give days (for the detectable lift) or lift (for the days needed)",
            source="query",
        )
    return plan(baseline, variance, units_per_day, arms=arms, days=days, lift=lift)


def check_lift(lift: float) -> None:
    """The one range every door (API, SDK, CLI) holds a relative lift to, planning or not: at
    or below -1 a mean would vanish or turn negative, and past ``MAX_RELATIVE`` the power comes out
    as a number that looks right for an effect no one meant."""
    if not -1 < lift <= MAX_RELATIVE:  # NaN fails this too
        raise FieldInvalid(
            "lift",
            f"must be above -1 and at most {MAX_RELATIVE:g} (relative, 0.05 = +5 %)",
            source="query",
        )
    if lift == 0:
        raise FieldInvalid(
            "lift", "0 is no change, which no sample detects: give the smallest lift worth "
            "detecting (0.05 = +5 %)", source="query",
        )  # fmt: skip


def check_running(**planning: float | None) -> None:
    """A running experiment's power comes from its own traffic and metric: a planning input
    given beside its key would be ignored without a word, so it is refused, naming it."""
    for name, value in planning.items():
        if value is not None:
            raise FieldInvalid(
                name, "plans an experiment; with experiment_key the experiment's own traffic "
                "is used: leave it out, or leave out the key to plan", source="query",
            )  # fmt: skip


def plan(
    mean: float,
    variance: float,
    units_per_day: float,
    *,
    arms: int = 2,
    days: int | None = None,
    lift: float | None = None,
    alpha: float = stats.ALPHA,
    target: float = stats.POWER,
) -> dict[str, Any]:
    """For ``days`` of traffic, the minimum detectable lift; for a ``lift``, the units per arm
    and the days it needs. ``units_per_day`` is all arms' traffic together."""
    per_arm = units_per_day / arms
    answer: dict[str, Any] = {"units_per_arm_per_day": per_arm, "power": target, "alpha": alpha}
    if days is not None:
        answer["days"] = days
        answer["minimum_detectable_lift"] = stats.minimum_detectable_effect(
            mean, variance, per_arm * days, alpha, target
        )
    if lift is not None:
        needed = stats.units_needed(mean, variance, lift, alpha, target)
        answer["lift"] = lift
        answer["units_per_arm_needed"] = needed
        answer["days_needed"] = math.ceil(needed / per_arm) if needed and per_arm else None
    return answer


async def reached(
    session: AsyncSession,
    key: str,
    *,
    lift: float,
    metric: str | None = None,
    alpha: float = stats.ALPHA,
    target: float = stats.POWER,
) -> dict[str, Any]:
    """A running experiment's power against ``lift`` on ``metric`` (default: its primary
    metric) with the units its smallest arm has, and the days left until it reaches
    ``target`` at the traffic per arm and day seen so far (None: no traffic yet). A CUPED
    metric's variance is the adjusted one. ``reason`` says why, when the numbers are nulls
    and zeros (no units, a zero control mean, no variance yet), naming the ``metric``."""
    check_lift(lift)
    experiment = await get_experiment(session, key)
    name = metric or experiment.primary_metric
    counts = await results.variant_counts(session, key)
    control_key = experiment.variants[0]["variant_key"]
    control_counts = counts.get(control_key, {})
    terms: dict[str, dict[str, float]] = {}
    term: str | None = None
    if name in BUILT_IN:
        control: stats.Statistic = results.arm_metrics(control_counts)[BUILT_IN[name]]
    elif name in definitions.named(experiment):
        terms = await results.metric_terms(session, key)
        defined = await definitions.get_metric(session, name)
        term = history.units_term(defined)
        control = results.defined_metric(defined, control_counts, terms.get(control_key, {}))
        if isinstance(control, stats.Adjusted):
            # CUPED: the variance left once the pooled θ adjusts it, which is what the
            # results test; the lift stays relative to the mean as measured.
            treatment_key = experiment.variants[1]["variant_key"]
            treatment = results.defined_metric(
                defined, counts.get(treatment_key, {}), terms.get(treatment_key, {})
            )
            control, _ = stats.cuped(control, treatment)  # type: ignore[arg-type]
    else:
        raise FieldInvalid(
            "metric", f"{name!r} is not a metric of experiment {key!r}", source="query"
        )
    per_arm = min(
        results.units(counts.get(v["variant_key"], {}), terms.get(v["variant_key"], {}), term)
        for v in experiment.variants
    )
    first = await session.scalar(
        select(func.min(DailyTotals.day)).where(DailyTotals.experiment_key == key)
    )
    if first is None and per_arm:
        # Units served by performance records only: no impression has a day; the traffic is
        # counted from the day the experiment was registered.
        first = experiment.created_at.date()
    days = (datetime.now(UTC).date() - first).days + 1 if first else 0
    mean, variance = control.unadjusted_mean, control.variance
    needed = stats.units_needed(mean, variance, lift, alpha, target)
    rate = per_arm / days if days else 0.0
    left = None
    if needed is not None and rate:
        left = max(0, math.ceil((needed - per_arm) / rate))
    return {
        "reason": _reason(name, mean, variance, per_arm),
        "experiment_key": key,
        "metric": name,
        "lift": lift,
        "control_mean": mean,
        "variance": variance,
        "units_per_arm": per_arm,
        "days_running": days,
        "power_reached": stats.power(mean, variance, per_arm, lift, alpha),
        "units_per_arm_needed": needed,
        "days_left": left,
        "minimum_detectable_lift": stats.minimum_detectable_effect(
            mean, variance, per_arm, alpha, target
        ),
    }


def _reason(name: str, mean: float, variance: float, per_arm: int) -> str | None:
    """Why a running experiment's power has no answer yet (its nulls and zeros), in the words
    planning uses for the same input; None when the numbers stand."""
    if not per_arm:
        return f"metric: {name} has no units yet: every arm needs exposed units"
    if mean == 0:
        return (
            f"metric: control's {name} is 0 so far (for a rate: no conversions yet); "
            "a relative lift needs a non-zero control mean"
        )
    if variance <= 0:
        return f"metric: {name} does not vary across control's units yet; power needs variance"
    return None
