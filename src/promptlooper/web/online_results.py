"""The results page's picture of what ``online.results`` computed: the answer in a sentence,
health banners, one row per treatment and metric with its forest-plot geometry, and the
series over time as chart specs. Presentation only: every number comes from the domain."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from promptlooper.online import display
from promptlooper.online.models import OnlineExperiment
from promptlooper.online.stats import ALPHA

METRICS = {"conversion_rate": "conversion", "value_per_session": "value per session"}
PLOT_WIDTH = 200
PLOT_PAD = 10
SERIES_COLOURS = ("muted", "accent", "plum", "teal", "olive")
"""Colours that say nothing about an arm: green, red and amber mean better, worse, warning."""
MULTIPLE_EXPOSURE_WARNING = 0.01
"""A share of sessions seen in more than one variant above which the page warns."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """One treatment against control on one metric."""

    variant_key: str
    label: str
    metric: str
    error: str | None = None
    lift: float = 0.0
    low: float = 0.0
    high: float = 0.0
    chance: float = 0.0
    p_value: float = 1.0
    p_adjusted: float | None = None
    correction: str = ""
    sequential_p: float = 1.0
    control_mean: float = 0.0
    treatment_mean: float = 0.0
    role: str = ""
    """A defined metric's role in the experiment (primary, secondary, guardrail)."""
    lower_is_better: bool = False
    rate: bool = False
    """A share of units (shown in percent)."""

    @property
    def excludes_zero(self) -> bool:
        """The unadjusted interval says there is a difference (before the correction for
        testing several treatments and metrics at once)."""
        return self.error is None and (self.low > 0 or self.high < 0)

    @property
    def significant(self) -> bool:
        """Significant after the page's multiple-testing adjustment: the interval excluding
        zero alone would call one in twenty null metrics a winner."""
        p = self.p_value if self.p_adjusted is None else self.p_adjusted
        return self.excludes_zero and p < ALPHA

    @property
    def direction(self) -> str:
        """``better``, ``worse`` or ``unclear``: a colour and a word, only when significant."""
        if not self.significant:
            return "unclear"
        return "better" if (self.lift > 0) != self.lower_is_better else "worse"


@dataclass(frozen=True, slots=True)
class Forest:
    """Where a comparison's point, interval and zero fall on the shared plot scale."""

    zero: float
    point: float
    low: float
    high: float


def percent(value: float, digits: int = 1, sign: bool = True) -> str:
    """A fraction as a percentage: ``+4.1 %`` (signed for lifts, not for rates)."""
    return f"{value * 100:{'+' if sign else ''}.{digits}f} %"


def comparisons(experiment: OnlineExperiment, result: dict[str, Any]) -> list[Comparison]:
    labels = {v["variant_key"]: v.get("label") or v["variant_key"] for v in experiment.variants}
    found = []
    lead = display.primary_is_defined(result["variants"])
    for variant in result["variants"][1:]:
        builtin = list((variant.get("stats") or {}).items())
        defined = list((variant.get("metrics") or {}).items())
        blocks = defined + builtin if lead else builtin + defined
        for metric, stats in blocks:
            base = {
                "variant_key": variant["variant_key"],
                "label": labels.get(variant["variant_key"], variant["variant_key"]),
                "metric": metric,
                "control_mean": stats["control_mean"],
                "treatment_mean": stats["treatment_mean"],
                "role": stats.get("role", ""),
                "lower_is_better": stats.get("direction") == "lower",
                "rate": metric == "conversion_rate" or stats.get("aggregation") == "proportion",
            }
            if "error" in stats:
                found.append(Comparison(**base, error=stats["error"]))
                continue
            frequentist = stats["frequentist"]
            found.append(
                Comparison(
                    **base,
                    lift=stats["relative_lift"],
                    low=frequentist["ci"][0],
                    high=frequentist["ci"][1],
                    chance=stats["bayesian"]["chance_to_beat_control"],
                    p_value=frequentist["p_value"],
                    p_adjusted=frequentist.get("p_value_adjusted"),
                    correction=frequentist.get("correction", ""),
                    sequential_p=stats["sequential"]["p_value"],
                )
            )
    return found


def forest(rows: list[Comparison]) -> list[tuple[Comparison, Forest | None]]:
    """Each row with the geometry of its forest plot (None without a comparison), on one scale
    symmetric about zero for all rows so that intervals can be compared down the column."""
    shown = [r for r in rows if r.error is None]
    reach = max([abs(v) for r in shown for v in (r.low, r.high, r.lift) if math.isfinite(v)] or [0])
    reach = max(reach * 1.1, 0.01)
    span = PLOT_WIDTH - 2 * PLOT_PAD

    def x(value: float) -> float:
        return round(PLOT_PAD + (max(-reach, min(reach, value)) + reach) / (2 * reach) * span, 1)

    return [(r, None if r.error else Forest(x(0), x(r.lift), x(r.low), x(r.high))) for r in rows]


def headline(
    experiment: OnlineExperiment, result: dict[str, Any], rows: list[Comparison]
) -> tuple[str, str]:
    """The answer first, as (banner kind, sentence): a broken split, then an arm a guardrail
    stopped, then an arm still served past a guardrail (resumed by hand), then the best
    treatment on the primary metric (a defined one, or the conversion rate when it is the
    built-in ``conversion``) in that metric's direction."""
    health = result["health"]
    if health["srm_mismatch"]:
        return "bad", "Sample-ratio mismatch: do not trust these results."
    labels = {v["variant_key"]: v.get("label") or v["variant_key"] for v in experiment.variants}
    guardrails = result.get("guardrails", {})
    if stopped := guardrails.get("stopped_arms"):
        return "bad", _guardrail_sentence(
            labels, stopped, "stopped by", "its visitors are served the control."
        )
    if breaching := guardrails.get("breaching"):
        why = "resumed by hand" if experiment.auto_stop else "auto-stop is off"
        return "bad", _guardrail_sentence(
            labels, breaching, "breaches", f"{why}, so its visitors still see it."
        )
    primary = [r for r in rows if r.role == "primary"]
    name = experiment.primary_metric
    if not primary:
        primary, name = (
            [r for r in rows if r.metric == "conversion_rate"],
            METRICS["conversion_rate"],
        )
    compared = [r for r in primary if r.error is None]
    if not compared:
        if name == METRICS["conversion_rate"]:
            return (
                "warn",
                "No comparison yet: each arm needs exposed sessions with some conversions.",
            )
        return "warn", f"No comparison yet on {name}: each arm needs two units whose {name} varies."
    best = max(compared, key=lambda r: r.chance)
    sentence = (
        f"{best.label}: {percent(best.lift)} {name} "
        f"(95 % CI {percent(best.low)} to {percent(best.high)}), "
        f"{display.chance(best.chance)} chance to beat control"
    )
    if not health["enough_data"]:
        return "warn", sentence + " — too early to call: not enough data yet."
    if best.significant:
        verdict = best.direction
        return ("good" if verdict == "better" else "bad"), (
            f"{sentence} — significantly {verdict} than control."
        )
    if best.excludes_zero:
        return "info", (
            f"{sentence} — not significant once adjusted for the several comparisons "
            f"(adjusted p {best.p_adjusted or 1:.3f}): keep it running."
        )
    return "info", f"{sentence} — no significant difference yet."


def _guardrail_sentence(
    labels: dict[str, str], arms: dict[str, dict[str, Any]], verb: str, outcome: str
) -> str:
    """The first of ``arms`` and the guardrail it is past, with its lift and threshold."""
    arm, why = next(iter(arms.items()))
    others = f" (and {len(arms) - 1} more)" if len(arms) > 1 else ""
    shown = percent if why.get("scale", "relative") == "relative" else "{:+.4g}".format
    return (
        f"{labels.get(arm, arm)}{others} {verb} its guardrail {why['metric']}: "
        f"{shown(why['lift'])}, past its threshold of {shown(why['threshold'])} — {outcome}"
    )


def banners(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Health, worst first: sample-ratio mismatch, too little data, multiple exposure, bots
    and other refused events; counted in the experiment's units (exposed sessions, the units
    its performance records served, or either for a cross-source ratio primary)."""
    health = result["health"]
    per_arm, unit = health["units_per_arm"], health["units"]
    found = []
    if health["srm_mismatch"]:
        found.append(("bad", (
            f"Sample-ratio mismatch (p = {health['srm_p_value']:.2g}): the {unit} "
            f"({', '.join(f'{n:,}' for n in per_arm)}) do not match the allocations. "
            "Assignment or tracking is broken; find the cause before reading any lift."
        )))  # fmt: skip
    if not health["enough_data"]:
        found.append(("warn", (
            f"Not enough data yet: the smallest arm has {min(per_arm or [0]):,} {unit} "
            f"of the {health['min_units_per_arm']:,} each arm needs."
        )))  # fmt: skip
    if health["multiple_exposure_rate"] > MULTIPLE_EXPOSURE_WARNING:
        found.append(("warn", (
            f"Multiple exposure: {percent(health['multiple_exposure_rate'], sign=False)} of "
            "sessions were seen in more than one variant; their events count in each."
        )))  # fmt: skip
    rejected = health["rejected"]
    if not found and not rejected:
        found.append(("good", (
            f"Healthy: the split matches the allocations (sample-ratio p = "
            f"{health['srm_p_value']:.2g}), every arm has at least "
            f"{health['min_units_per_arm']:,} {unit}, no events refused."
        )))  # fmt: skip
    if rejected:
        total = sum(rejected.values())
        reasons = ", ".join(
            f"{count:,} {REFUSALS.get(reason, reason)}"
            for reason, count in sorted(rejected.items(), key=lambda item: -item[1])
        )
        kind = "warn" if health["bots_rejected"] else "info"
        found.append((kind, (
            f"{total:,} event{'s' if total != 1 else ''} refused: {reasons}. "
            "They are not in the numbers below."
        )))  # fmt: skip
    return found


REFUSALS = {
    "bot": "from bots (crawler or headless-browser user agents)",
    "origin": "from pages on sites not in CORS_ORIGINS",
    "experiment_inactive": "while the experiment was not running",
    "unknown_variant": "naming a variant it does not have",
    "unknown_event": "with an event name no metric tracks",
    "future_timestamp": "timestamped in the future",
    "stale_timestamp": "timestamped more than 7 days ago",
    "metadata_too_large": "with metadata over 4 KB",
}
"""How the results page says each ingestion refusal reason (``online/ingestion.py``)."""


def has_data(result: dict[str, Any]) -> bool:
    """Whether the experiment has anything to show: sessions seen, units its primary metric
    is measured on, or a defined metric with a value (an experiment fed by the performance log
    alone has its guardrail's numbers and no session)."""
    variants = result["variants"]
    return (
        any(v["exposed"] or v["unique_sessions"] for v in variants)
        or any(result["health"]["units_per_arm"])
        or any(
            block.get("control_mean") or block.get("treatment_mean")
            for v in variants[1:]
            for block in (v.get("metrics") or {}).values()
        )
    )


def lift_metric(series: dict[str, Any]) -> str:
    """What the lift over time is a lift in: the defined primary metric (with its direction
    when lower is better), else the conversion rate."""
    metric = series.get("metric")
    if metric is None:
        return "conversion rate"
    return metric["name"] + (", lower is better" if metric["direction"] == "lower" else "")


def no_lift(experiment: OnlineExperiment, series: dict[str, Any]) -> str:
    """Why no day has a lift to draw: the arm that lacks what a lift needs."""
    labels = [v.get("label") or v["variant_key"] for v in experiment.variants]
    if (metric := series.get("metric")) is not None:
        return _no_metric_lift(labels, metric)
    control, *treatments = series["conversion_rate"].values()
    if not any(rate is not None for rate in control):
        return f"the control ({labels[0]}) has no exposed sessions"
    if not any(control):
        return f"the control ({labels[0]}) has no conversions"
    # Cumulative rates: with a control conversion, only a treatment never exposed has no lift.
    unexposed = [
        label
        for label, rates in zip(labels[1:], treatments, strict=True)
        if all(rate is None for rate in rates)
    ]
    verb = "has" if len(unexposed) == 1 else "have"
    return f"{' and '.join(unexposed)} {verb} no exposed sessions"


def _no_metric_lift(labels: list[str], metric: dict[str, Any]) -> str:
    """Why no day has a lift in a defined primary metric: an arm without units, else what the
    results table needs to compare the arms."""
    control, *treatments = metric["units"].values()
    if not any(control):
        return f"the control ({labels[0]}) has no units measured yet"
    lacking = [label for label, units in zip(labels[1:], treatments, strict=True) if not any(units)]
    if lacking:
        verb = "has" if len(lacking) == 1 else "have"
        return f"{' and '.join(lacking)} {verb} no units measured yet"
    return (
        f"each arm needs two units whose {metric['name']} varies, and the control a mean "
        "other than zero"
    )


def _unix(day: Any) -> int:
    return int(datetime.combine(day, time(), tzinfo=UTC).timestamp())


def charts(
    experiment: OnlineExperiment, series: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """uPlot specs (``static/charts.js``): cumulative exposed sessions per variant, and each
    treatment's cumulative lift in percent, in the defined primary metric when there is one,
    else in conversion rate; None for the lift while no day has one (control has no
    conversion yet, say), rather than an empty chart. Each arm keeps its
    colour and line style in both charts; the styles tell apart arms whose lines coincide (two
    arms with the same exposures draw one line otherwise)."""
    x = [_unix(day) for day in series["days"]]
    labels = {v["variant_key"]: v.get("label") or v["variant_key"] for v in experiment.variants}
    arms = {key: index for index, key in enumerate(series["exposed"])}

    def line(key: str, values: list[Any]) -> dict[str, Any]:
        index = arms[key]
        return {
            "label": labels.get(key, key),
            "values": values,
            "color": SERIES_COLOURS[index % len(SERIES_COLOURS)],
            "style": index,
        }

    days = {"x": x, "time": True, "daily": True, "xlabel": "day (UTC)"}
    metric = series.get("metric")
    # The units the primary metric is measured on: an experiment fed by the performance log
    # alone has units served and no exposed session.
    counted = series["exposed"] if metric is None else metric["units"]
    exposure = days | {
        "ylabel": "exposed sessions" if metric is None else f"units measured ({metric['name']})",
        "unit": "sessions" if metric is None else "units",
        "digits": 0,
        "series": [line(k, v) for k, v in counted.items()],
    }
    lifts = series["lift"] if metric is None else metric["lift"]
    name = "conversion" if metric is None else metric["name"]
    lift = days | {
        "ylabel": f"lift in {name} (%)",
        "unit": "%",
        "digits": 1,
        "signed": True,
        "zero": True,
        "series": [
            # Rounded once, by the legend as by the table: 41.2451 first rounded to 41.25
            # would read +41.3 % beside a headline of +41.2 %.
            line(k, [None if v is None else round(v * 100, 6) for v in values])
            for k, values in lifts.items()
        ],
    }
    drawn = any(v is not None for values in lifts.values() for v in values)
    return exposure, lift if drawn else None
