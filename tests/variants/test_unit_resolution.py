"""``?unit_id=`` resolves through the online experiment running on the agent's variants."""

from __future__ import annotations

import httpx

from promptlooper.online.assignment import assign
from tests.factories import create_online_experiment
from tests.variants.conftest import extractor_experiment, make_variant
from tests.variants.test_agents_api import url

UNITS = [f"visitor-{i}" for i in range(12)]


async def _experiment(client, headers, treatment_id: str, **changes) -> None:
    await create_online_experiment(client, headers, extractor_experiment(treatment_id, **changes))


async def test_units_get_the_variant_their_arm_links_to(
    client: httpx.AsyncClient, owner, agent, bootstrap_headers
):
    cool = await make_variant(client, owner, agent, name="Cool", temperature=0.1)
    hot = await make_variant(client, owner, agent, name="Hot", temperature=1.2)
    await client.post(url(agent, "variants", cool["id"], "activate"), headers=owner.headers)
    await _experiment(client, bootstrap_headers, hot["id"])

    for unit in UNITS:
        response = await client.get(
            url(agent, "config"), params={"unit_id": unit}, headers=owner.headers
        )
        body = response.json()
        arm = ["control", "hot"][assign(unit, "extractor_temperature", [50, 50])]  # type: ignore[index]
        assert body["experiment"] == {"experiment_key": "extractor_temperature", "variant_key": arm}
        expected = hot if arm == "hot" else cool  # control serves what the agent serves
        assert body["variant_id"] == expected["id"], unit
        assert body["config"]["temperature"] == (1.2 if arm == "hot" else 0.1)

    plain = (await client.get(url(agent, "config"), headers=owner.headers)).json()
    assert plain["variant_id"] == cool["id"]
    assert plain["experiment"] is None


async def test_without_a_live_experiment_unit_id_changes_nothing(
    client: httpx.AsyncClient, owner, agent, bootstrap_headers
):
    hot = await make_variant(client, owner, agent, name="Hot", temperature=1.2)
    await _experiment(client, bootstrap_headers, hot["id"], status="stopped")

    for unit in UNITS[:4]:
        body = (
            await client.get(url(agent, "config"), params={"unit_id": unit}, headers=owner.headers)
        ).json()
        assert body["source"] == "agent"
        assert body["experiment"] is None


async def test_a_variant_an_experiment_serves_cannot_be_deleted(
    client: httpx.AsyncClient, owner, agent, project_id, bootstrap_headers
):
    hot = await make_variant(client, owner, agent, name="Hot", temperature=1.2)
    await _experiment(client, bootstrap_headers, hot["id"], status="stopped")

    for target in (
        url(agent, "variants", hot["id"]),
        url(agent),
        f"/api/projects/{project_id}",
    ):
        refused = await client.delete(target, headers=owner.headers)
        assert refused.status_code == 409, target
        assert "'extractor_temperature'" in refused.json()["detail"]
        assert "arm 'hot'" in refused.json()["detail"]
    served = await client.get(url(agent, "variants", hot["id"]), headers=owner.headers)
    assert served.status_code == 200

    archive = "/api/admin/experiments/extractor_temperature/archive"
    await client.post(archive, headers=bootstrap_headers)
    deleted = await client.delete(url(agent, "variants", hot["id"]), headers=owner.headers)
    assert deleted.status_code == 204, deleted.text


async def test_an_arm_cannot_link_a_variant_that_does_not_exist(
    client: httpx.AsyncClient, owner, agent, bootstrap_headers
):
    missing = "00000000-0000-4000-8000-000000000000"
    body = extractor_experiment(missing)
    created = await client.post("/api/admin/experiments", json=body, headers=bootstrap_headers)
    assert created.status_code == 422
    assert created.json()["detail"] == [
        {
            "loc": ["body", "variants", 1, "agent_variant_id"],
            "msg": f"no agent variant {missing}",
            "type": "value_error",
        }
    ]
    listed = await client.get("/api/admin/experiments", headers=bootstrap_headers)
    assert listed.json() == {"data": [], "count": 0}

    hot = await make_variant(client, owner, agent, name="Hot")
    await _experiment(client, bootstrap_headers, hot["id"])
    del body["experiment_key"]
    replaced = await client.put(
        "/api/admin/experiments/extractor_temperature", json=body, headers=bootstrap_headers
    )
    assert replaced.status_code == 422
    assert replaced.json()["detail"][0]["loc"] == ["body", "variants", 1, "agent_variant_id"]


async def test_a_refused_link_points_at_the_arm_as_sent_when_the_control_comes_last(
    client: httpx.AsyncClient, agent, bootstrap_headers
):
    missing = "00000000-0000-4000-8000-000000000000"
    body = extractor_experiment(missing)
    body["variants"].reverse()  # the treatment first, the control after it

    created = await client.post("/api/admin/experiments", json=body, headers=bootstrap_headers)

    assert created.status_code == 422
    assert created.json()["detail"][0]["loc"] == ["body", "variants", 0, "agent_variant_id"]
