"""What a leaderboard means, in words: the sentence the web page, the CLI and the report open
with, the numbers of a comparison as people read them, and the regression gate's decision."""

from __future__ import annotations

from dataclasses import dataclass

from promptlooper.errors import Invalid
from promptlooper.sweeps.significance import Paired
from promptlooper.sweeps.summary import ConfigSummary, ExperimentSummary, VersusLeader


def score_text(config: ConfigSummary) -> str:
    """``0.907 [0.892, 0.923]``: the score and its 95 % interval (alone from one row)."""
    if config.score is None:
        return "n/a"
    found = config.interval
    if found is None or found.n < 2:
        return f"{config.score:.3f}"
    return f"{config.score:.3f} [{found.low:.3f}, {found.high:.3f}]"


def p_text(p_value: float) -> str:
    """A p-value as people read it: three decimals, and "< 0.001" below that."""
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def answer(summary: ExperimentSummary) -> str | None:
    """The page's first sentence: who leads, by how much, over how many runs, and whether the
    lead over #2 is real (paired over the rows both answered, adjusted for comparing every
    config with the leader) or could be noise."""
    ranked = summary.ranked
    if not ranked:
        return None
    best = ranked[0]
    runs = f"{best.completed:,} run{'s' if best.completed != 1 else ''}"
    text = f"Config #1 ({best.config_hash[:8]}) leads with {score_text(best)} over {runs}"
    if len(ranked) > 1:
        second, versus = ranked[1], summary.runner_up
        if versus is None:
            text += f"; #2 follows at {score_text(second)} (too few rows to say how surely)"
        else:
            paired = versus.paired
            difference = (
                f"{paired.diff:+.3f} [{paired.low:+.3f}, {paired.high:+.3f}] over "
                f"{paired.n:,} rows, {p_text(versus.p_adjusted)} adjusted"
            )
            if not versus.tied:
                text += f"; clearly ahead of #2 at {score_text(second)} ({difference})"
            else:
                text += (
                    f"; tied with #2 at {score_text(second)}: the difference could be "
                    f"noise ({difference}; {separation_text(versus.rows_needed)})"
                )
        tied = sum(1 for c in ranked[1:] if c.versus_leader and c.versus_leader.tied)
        if tied > 1:
            text += f". {tied} configs are tied with the leader"
    return text + "."


def versus_text(versus: VersusLeader | None) -> str:
    """A config against the leader in one cell: ``-0.120 [-0.200, -0.040] p = 0.004`` and
    ``tied`` when the difference is not shown to be real."""
    if versus is None:
        return ""
    paired = versus.paired
    text = f"{paired.diff:+.3f} [{paired.low:+.3f}, {paired.high:+.3f}] {p_text(versus.p_adjusted)}"
    return text + " tied" if versus.tied else text


def direction(paired: Paired) -> str:
    """``better`` or ``worse`` when the whole 95 % interval of B − A lies on one side of
    zero, else ``tied``: the difference could be noise."""
    if paired.low > 0:
        return "better"
    if paired.high < 0:
        return "worse"
    return "tied"


def separation_text(rows_needed: int | None) -> str:
    """What more data would do for a tied pair: how many rows would separate them at the
    observed difference (power 0.8), or that none would."""
    if rows_needed is None:
        return "no number of rows would separate them"
    return f"about {rows_needed:,} rows would separate them"


@dataclass(frozen=True, slots=True)
class Gate:
    failed: bool
    reason: str


MARGIN_RANGE = "margin must be a number between 0 and 1"


def check_margin(margin: float) -> float:
    """The gate's margin, a loss of weighted score, refused unless it is a number from 0 to 1:
    NaN passes every comparison, so a range check alone would let it through or name the
    wrong bound. The API and the CLI refuse it with the same words."""
    if not 0 <= margin <= 1:
        raise ValueError(MARGIN_RANGE)
    return margin


def gate(paired: Paired | None, rows_needed: int | None, margin: float) -> Gate:
    """The regression gate: a candidate fails when it is significantly worse than the
    baseline by more than ``margin``, that is when the whole 95 % interval of its paired
    difference lies below −margin (a one-sided test at 2.5 %). Too little data to show such a
    loss passes, and says what the data cannot rule out."""
    if paired is None:
        raise Invalid("candidate: fewer than two rows answered by both configs; nothing to compare")
    difference = (
        f"{paired.diff:+.4f} [{paired.low:+.4f}, {paired.high:+.4f}] against the baseline over "
        f"{paired.n:,} rows ({paired.test}, {p_text(paired.p_value)}; "
        f"{paired.losses:,} {'row' if paired.losses == 1 else 'rows'} worse, "
        f"{paired.wins:,} better)"
    )
    if paired.high < -margin:
        return Gate(
            True,
            f"regression: the candidate scores {difference}: worse by more than the margin "
            f"{margin:g}, since the whole 95 % interval lies below {-margin:+g}",
        )
    if paired.low > 0:
        return Gate(False, f"improvement: the candidate scores {difference}")
    text = (
        f"no significant regression beyond the margin {margin:g}: the candidate scores {difference}"
    )
    if paired.low < -margin:
        more = (
            f"; about {rows_needed:,} rows would tell this difference from none"
            if rows_needed and rows_needed > paired.n
            else ""
        )
        text += f"; the data cannot rule out a loss of up to {-paired.low:.4f}{more}"
    return Gate(False, text)
