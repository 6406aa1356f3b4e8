"""The OpenAPI document describes the 422s the API really answers, of both shapes."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
from fastapi import FastAPI

from tests.factories import Actor
from tests.sweeps.conftest import document


def _documented_422(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    response = document["paths"][path][method]["responses"]["422"]
    schema = response["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


async def test_every_documented_422_accepts_both_shapes(app: FastAPI) -> None:
    document = app.openapi()
    field_problem = {"detail": [{"loc": ["body", "name"], "msg": "Field required", "type": "x"}]}
    rule_broken = {"detail": "unknown provider type 'nope'"}
    operations = [
        (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "422" in operation["responses"]
    ]
    assert len(operations) > 50
    for method, path in operations:
        schema = _documented_422(document, method, path)
        jsonschema.validate(field_problem, schema)
        jsonschema.validate(rule_broken, schema)


async def test_a_domain_refusal_and_a_field_error_match_the_document(
    app: FastAPI, client: httpx.AsyncClient, owner: Actor, project_id: str
) -> None:
    path = "/api/projects/{project_id}/experiments"
    schema = _documented_422(app.openapi(), "post", path)
    sweeps = f"/api/projects/{project_id}/experiments"
    unknown_provider = document(providers={"mock": {"type": "nope"}})

    domain = await client.post(sweeps, json=unknown_provider, headers=owner.headers)
    field = await client.post(sweeps, json={"name": 1}, headers=owner.headers)

    assert (domain.status_code, field.status_code) == (422, 422)
    assert isinstance(domain.json()["detail"], str)
    assert isinstance(field.json()["detail"], list)
    jsonschema.validate(domain.json(), schema)
    jsonschema.validate(field.json(), schema)
