"""The most runs an experiment may have is the ``SWEEP_MAX_RUNS`` setting."""

from __future__ import annotations

import httpx
import pytest

from promptlooper.settings import Settings
from tests.sweeps.conftest import ROWS, document


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sweep_max_runs": 24})


def test_the_default_allows_ten_million_runs():
    assert Settings(_env_file=None).sweep_max_runs >= 10_000_000


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (  # 8 configs × 3 rows × 2 repeats = 48
            {"repeats": 2},
            "parameter_space: 8 configs × 3 rows × 2 repeats is over the limit of 24 runs "
            "(the SWEEP_MAX_RUNS setting); use search: {strategy: random, n: ...}",
        ),
        (
            {"search": {"strategy": "random", "n": 5, "seed": 1}, "dataset": {"rows": ROWS * 2}},
            "search.n: 30 runs is over the limit of 24 (the SWEEP_MAX_RUNS setting)",
        ),
    ],
)
async def test_a_sweep_over_the_limit_is_422_naming_the_setting(
    client: httpx.AsyncClient, owner, project_id, changes: dict, message: str
):
    response = await client.post(
        f"/api/projects/{project_id}/experiments", json=document(**changes), headers=owner.headers
    )
    at_the_limit = await client.post(
        f"/api/projects/{project_id}/experiments", json=document(), headers=owner.headers
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == message
    assert at_the_limit.status_code == 201, at_the_limit.text
