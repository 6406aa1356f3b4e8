"""Every non-public route in the OpenAPI schema refuses missing and bad credentials."""

from __future__ import annotations

import re
import uuid

import httpx
import jwt
import pytest
from fastapi import FastAPI

from promptlooper.api.app import PUBLIC_PATHS
from tests.conftest import TEST_JWT_SECRET

BAD_CREDENTIALS = {
    "none": {},
    "wrong X-Api-Key": {"X-Api-Key": "pl_not-a-real-key"},
    "wrong bearer key": {"Authorization": "Bearer pl_not-a-real-key"},
    "garbage bearer JWT": {"Authorization": "Bearer aaa.bbb.ccc"},
    "JWT of a deleted user": {
        "Authorization": "Bearer "
        + jwt.encode(
            {"sub": str(uuid.uuid4()), "exp": 4102444800, "typ": "access"},
            TEST_JWT_SECRET,
            algorithm="HS256",
        )
    },
    "empty bearer": {"Authorization": "Bearer "},
}


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    operations = []
    for path, methods in app.openapi()["paths"].items():
        for method in methods:
            operations.append((method.upper(), path))
    return operations


async def test_the_schema_has_protected_routes(app: FastAPI):
    protected = [op for op in _operations(app) if op[1] not in PUBLIC_PATHS]
    assert len(protected) >= 10
    assert {p for _, p in _operations(app)} >= PUBLIC_PATHS


@pytest.mark.parametrize("credential", list(BAD_CREDENTIALS))
async def test_non_public_routes_answer_401(
    app: FastAPI, client: httpx.AsyncClient, credential: str
):
    failures = []
    for method, path in _operations(app):
        if path in PUBLIC_PATHS:
            continue
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        response = await client.request(method, url, headers=BAD_CREDENTIALS[credential])
        if response.status_code != 401 or "detail" not in response.json():
            failures.append(f"{method} {path} -> {response.status_code}")
    assert failures == []


async def test_public_routes_answer_without_credentials(client: httpx.AsyncClient):
    assert (await client.get("/api/health")).status_code == 200
    login = await client.post("/api/auth/login", json={"username": "x", "password": "y"})
    assert login.status_code == 401  # reachable: it judged the credentials, not the caller
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs")).status_code == 200
