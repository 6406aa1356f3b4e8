"""The example sweeps score what they say they score."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlooper.sweeps.engine.runner import weighted_score
from promptlooper.sweeps.plan import compile_plan
from promptlooper.sweeps.scorers import ScorerContext
from promptlooper.sweeps.spec import load_sweep_file, parse_spec

EXAMPLES = Path(__file__).parents[2] / "examples" / "ticket-triage"


@pytest.mark.parametrize("name", ["sweep.yaml", "small.yaml", "smollm2.yaml", "scale-out.yaml"])
@pytest.mark.parametrize(
    ("output", "accuracy"),
    [
        ("billing", 1.0),
        (" Billing. ", 1.0),
        ("bug", 0.0),
        ("billing, bug, account or shipping", 0.0),  # every label is not an answer
        ("Billing or bug", 0.0),
    ],
)
def test_the_triage_examples_reward_exactly_the_expected_label(
    name: str, output: str, accuracy: float
):
    plan = compile_plan(parse_spec(load_sweep_file(EXAMPLES / name)))
    (scorer,) = (s for s in plan.build_scorers(ScorerContext()) if s.name == "accuracy")
    row = {"input": "My card was charged twice", "expected": "billing"}
    context = {"input": row["input"], "expected": "billing", "row": row, "config": {}}

    assert scorer.score(row["input"], output, context) == accuracy


@pytest.mark.parametrize(
    ("output", "score"),
    [
        ("positive", 1.0),
        ("This customer message is positive.", 1.0),
        ("negative", 0.5),  # names one sentiment, the wrong one
        ("positive or negative", 0.5),  # hedging scores no better than a wrong answer
        ("I'm glad to hear that", 0.0),
    ],
)
def test_the_sentiment_demo_rewards_naming_the_expected_sentiment_alone(output: str, score: float):
    plan = compile_plan(
        parse_spec(load_sweep_file(EXAMPLES.parent / "support-sentiment" / "smollm2.yaml"))
    )
    scorers = plan.build_scorers(ScorerContext())
    row = {"input": "Thank you, the refund arrived the next day!", "expected": "positive"}
    context = {"input": row["input"], "expected": "positive", "row": row, "config": {}}
    values = {s.name: s.score(row["input"], output, context) for s in scorers}

    assert weighted_score(values, plan.weights) == score
