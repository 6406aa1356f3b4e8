"""The pure config core: slugs from the shared spec cases, overlay and provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlooper.errors import Invalid
from promptlooper.types import UNSET
from promptlooper.variants.config import (
    CONFIG_FIELDS,
    base_config,
    overlay,
    override,
    provenance,
    slugify,
    unique_slug,
    validate_fields,
)

CASES = json.loads((Path(__file__).parents[1] / "spec" / "slugify.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_slugify_spec_cases(case: dict):
    assert slugify(case["name"]) == case["slug"]


def test_unique_slug_appends_a_counter():
    assert unique_slug("extractor", set()) == "extractor"
    assert unique_slug("extractor", {"extractor", "extractor-2"}) == "extractor-3"


def test_overlay_and_provenance_distinguish_unset_from_none():
    base = base_config({"model_provider": "openai", "model_name": "a", "token_budget": 1000})
    overrides = {"model_name": "b", "token_budget": None}

    effective = overlay(base, overrides)
    sources = provenance(base, overrides)

    assert effective["model_name"] == "b"
    assert effective["token_budget"] is None  # overridden with "no limit"
    assert effective["model_provider"] == "openai"
    assert sources["model_name"] == sources["token_budget"] == "variant"
    assert sources["model_provider"] == "agent"
    assert sources["temperature"] == "default"
    assert override(overrides, "temperature") is UNSET
    assert set(effective) == set(CONFIG_FIELDS)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"timeout_seconds": 0.5}, "timeout_seconds"),
        ({"timeout_seconds": float("inf")}, "timeout_seconds"),
        ({"temperature": float("nan")}, "temperature"),
        ({"max_retries": -1}, "max_retries"),
        ({"colour": "red"}, "colour"),
        ({"model_name": ""}, "model_name"),
    ],
)
def test_field_rules(values: dict, field: str):
    with pytest.raises(Invalid, match=field):
        validate_fields(values)


def test_a_base_config_needs_provider_and_model():
    with pytest.raises(Invalid, match="model_name"):
        base_config({"model_provider": "openai"})
