"""The online-LLM example script reuses a metric only when it measures what the script needs,
and its metric names do not collide with the README's other online examples."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from promptlooper.client import Client
from tests.conftest import BOOTSTRAP_KEY

ROOT = Path(__file__).parents[2]


def _simulate() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "simulate", ROOT / "examples" / "online-llm" / "simulate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_different_metric_under_the_same_name_stops_the_simulation(live_url: str):
    simulate = _simulate()
    with Client(live_url, api_key=BOOTSTRAP_KEY) as client:
        client.online.define_metric(
            "cost-per-call",
            source="llm_call",
            aggregation="ratio",
            denominator="llm_call",
            direction="lower",
        )
        with pytest.raises(SystemExit) as stopped:
            simulate.define_metrics(client)

    message = str(stopped.value)
    assert "metric 'cost-per-call' already exists with kind='event'" in message
    assert "source='llm_call'" in message
    assert "needs kind='performance'" in message
    assert "source='cost'" in message
    assert "promptlooper online metric-delete cost-per-call" in message


def test_the_same_metrics_defined_earlier_are_reused(live_url: str):
    simulate = _simulate()
    with Client(live_url, api_key=BOOTSTRAP_KEY) as client:
        simulate.define_metrics(client)
        simulate.define_metrics(client)  # a second run finds its own definitions
        names = {m["name"] for m in client.online.metrics()["data"]}

    assert names >= {m["name"] for m in simulate.METRICS}


def test_the_readme_examples_define_no_metric_the_simulation_defines_otherwise():
    simulate = _simulate()
    readme = (ROOT / "README.md").read_text()
    needs = {m["name"]: simulate.DEFAULTS | m for m in simulate.METRICS}
    bodies = re.findall(
        r"/api/admin/metrics\b[^\n]*\n(?:[^\n]*\n){0,2}?\s*-d '(\{[^']*\})'", readme
    )
    defined = [simulate.DEFAULTS | json.loads(body) for body in bodies]

    assert len(defined) >= 4
    clashes = [m["name"] for m in defined if m["name"] in needs and m != needs[m["name"]]]
    assert clashes == []
