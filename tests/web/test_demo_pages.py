"""The demo's experiments run on pages the server really serves."""

from __future__ import annotations

import httpx
import pytest

from promptlooper.online.demo import DEMO_EXPERIMENTS


@pytest.mark.parametrize(
    "experiment", DEMO_EXPERIMENTS, ids=[e["experiment_key"] for e in DEMO_EXPERIMENTS]
)
async def test_each_demo_route_is_a_page_showing_every_variant_of_its_experiment(
    client: httpx.AsyncClient, experiment: dict
):
    for route in experiment["eligible_routes"]:
        response = await client.get(route)

        assert response.status_code == 200, route
        assert response.headers["content-type"].startswith("text/html")
        assert '<script src="/static/promptlooper-ab.js"' in response.text
        for variant in experiment["variants"]:
            marker = (
                f'data-experiment="{experiment["experiment_key"]}" '
                f'data-variant="{variant["variant_key"]}"'
            )
            assert marker in response.text, (route, variant["variant_key"])
