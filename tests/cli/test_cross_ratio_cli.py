"""A cross-source ratio metric from the terminal: defined from YAML, listed with its
denominator, refused with one line naming the field, and reported by ``online results``."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli.inprocess import Invoke
from tests.factories import online_experiment
from tests.variants.test_cross_source_ratios import METRIC


def test_a_cross_source_ratio_from_the_terminal(cli: Invoke, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(METRIC | {"denominator": {"kind": "performance", "source": "x"}}))
    good = tmp_path / "metric.yaml"
    good.write_text(yaml.safe_dump(METRIC))
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        yaml.safe_dump(online_experiment("answers", "lean", primary_metric="cost-per-signup"))
    )

    refused = cli("online", "metric-create", str(bad))
    created = cli("online", "metric-create", str(good))
    listed = cli("online", "metrics")
    assert cli("online", "create", str(experiment)).code == 0
    results = cli("online", "results", "answers")

    assert refused.code == 2
    assert "denominator.source" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert created.code == 0, created.err
    assert "ratio of 'cost' per 'signup' (event)" in created.out
    assert "ratio per signup (event)" in " ".join(listed.out.split())
    assert results.code == 0, results.err
    assert "cost-per-signup" in results.out
    # The primary is a defined metric: its table comes before the built-in conversion rate.
    assert results.out.index("answers: defined metrics") < results.out.index(
        "answers: conversion rate"
    )


def test_a_denominator_of_an_unknown_kind_is_one_line_naming_the_kinds(cli: Invoke, tmp_path: Path):
    bad = tmp_path / "m5.yaml"
    bad.write_text(yaml.safe_dump(METRIC | {"denominator": {"kind": "perf", "source": "cost"}}))

    refused = cli("online", "metric-create", str(bad))

    assert refused.code == 2
    assert refused.err.strip().splitlines() == [
        "error: m5.yaml: denominator.kind: Input should be 'event' or 'performance'"
    ]
