"""Two configs compared row by row: two configs of one experiment, or a baseline experiment's
config and a candidate experiment's over the same dataset (a prompt change checked against
what it replaces). The answer is the paired analysis and the rows the candidate lost most on,
first: where to look before shipping it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth.principal import Principal
from promptlooper.errors import Invalid
from promptlooper.sweeps import service, significance
from promptlooper.sweeps.models import Experiment
from promptlooper.sweeps.significance import Paired
from promptlooper.sweeps.summary import ConfigSummary, choose


@dataclass(frozen=True, slots=True)
class Side:
    experiment: Experiment
    config: ConfigSummary


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row both configs answered: their weighted scores (a row's repeats averaged) and
    what each answered first."""

    row_index: int
    baseline: float
    candidate: float
    inputs: dict[str, Any]
    baseline_output: str | None
    candidate_output: str | None

    @property
    def change(self) -> float:
        return self.candidate - self.baseline


@dataclass(frozen=True, slots=True)
class Comparison:
    baseline: Side
    candidate: Side
    paired: Paired | None
    """Candidate minus baseline over the rows both answered (None under two such rows)."""
    rows_needed: int | None
    rows: list[RowChange]
    """Every row both answered, the candidate's worst loss first."""


def _dataset(experiment: Experiment) -> list[Any]:
    return list(((experiment.spec or {}).get("dataset") or {}).get("rows") or [])


async def compare(
    session: AsyncSession,
    principal: Principal,
    baseline_id: uuid.UUID,
    candidate_id: uuid.UUID,
    *,
    a: str | None = None,
    b: str | None = None,
) -> Comparison:
    """Config ``a`` of the baseline experiment against config ``b`` of the candidate (each a
    hash or a prefix of one; left out, the experiment's best). One experiment given twice
    compares two of its configs, and then ``b`` left out means its runner-up."""
    same = baseline_id == candidate_id
    base_experiment = await service.get_experiment(session, principal, baseline_id)
    base_summary = await service.summary(session, base_experiment)
    if same:
        cand_experiment, cand_summary = base_experiment, base_summary
    else:
        cand_experiment = await service.get_experiment(session, principal, candidate_id)
        if _dataset(base_experiment) != _dataset(cand_experiment):
            raise Invalid(
                "candidate: its dataset differs from the baseline's; a paired comparison needs "
                "the same rows in the same order"
            )
        cand_summary = await service.summary(session, cand_experiment)
    base = choose(base_summary.ranked, a, field="a", experiment_field="baseline")
    if same and b is None:
        if len(base_summary.ranked) < 2:
            raise Invalid("b: the experiment has one scored config; name two to compare")
        cand = base_summary.ranked[1] if base is base_summary.ranked[0] else base_summary.ranked[0]
    else:
        cand = choose(cand_summary.ranked, b, field="b", experiment_field="candidate")
    if same and cand is base:
        raise Invalid("b: the same config as a; name two different configs")

    common = sorted(base.row_scores.keys() & cand.row_scores.keys())
    paired, rows_needed = analyse(base, cand)
    outputs = await service.aligned_outputs(
        session, principal, base_experiment.id, [base.config_hash]
    )
    base_outputs = outputs[base.config_hash]
    cand_outputs = (
        await service.aligned_outputs(session, principal, cand_experiment.id, [cand.config_hash])
    )[cand.config_hash]
    rows = [
        RowChange(
            row_index=row,
            baseline=base.row_scores[row],
            candidate=cand.row_scores[row],
            inputs=base_outputs[row].inputs if row in base_outputs else {},
            baseline_output=base_outputs[row].output if row in base_outputs else None,
            candidate_output=cand_outputs[row].output if row in cand_outputs else None,
        )
        for row in common
    ]
    rows.sort(key=lambda r: (r.change, r.row_index))
    return Comparison(
        baseline=Side(base_experiment, base),
        candidate=Side(cand_experiment, cand),
        paired=paired,
        rows_needed=rows_needed,
        rows=rows,
    )


def analyse(base: ConfigSummary, cand: ConfigSummary) -> tuple[Paired | None, int | None]:
    """``cand`` against ``base`` over the rows both answered: the paired test (exact McNemar
    for pass/fail scores, a paired t-test otherwise; None under two rows) and how many rows
    would separate them at the observed difference. The API, the CLI gate and the web page's
    comparison all read it from here."""
    common = sorted(base.row_scores.keys() & cand.row_scores.keys())
    ours = [base.row_scores[row] for row in common]
    theirs = [cand.row_scores[row] for row in common]
    binary = significance.is_binary(ours) and significance.is_binary(theirs)
    return (
        significance.paired(ours, theirs, binary=binary),
        significance.rows_to_separate(ours, theirs, binary=binary),
    )
