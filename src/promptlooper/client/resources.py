"""The SDK's resources: one method per API operation, shared by the sync and async clients.

A method returns whatever the client's runner makes of its ``Call``: the parsed answer for
``Client``, an awaitable of it for ``AsyncClient``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal
from urllib.parse import quote

from promptlooper.client.calls import Call, Resolve, Resolved, text
from promptlooper.client.events import Flush
from promptlooper.client.outbox import Enqueue

Runner = Callable[[Call | Resolve | Enqueue | Flush], Any]
ExportFormat = Literal["best", "env", "yaml", "report"]


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class _Resource:
    def __init__(self, run: Runner, default_project: str | None = None) -> None:
        self._run = run
        self._project = default_project

    def _project_id(self, project_id: str | None) -> str:
        chosen = project_id or self._project
        if chosen is None:
            raise ValueError("give project_id, or create the client with project_id=...")
        return quote(str(chosen), safe="")


class Projects(_Resource):
    def create(self, name: str, description: str = "") -> Any:
        return self._run(Call("POST", "/api/projects", {"name": name, "description": description}))

    def list(self) -> Any:
        return self._run(Call("GET", "/api/projects"))

    def get(self, project_id: str) -> Any:
        return self._run(Call("GET", f"/api/projects/{project_id}"))


class Agents(_Resource):
    """Agents and their base configs. Config fields go as keyword arguments."""

    def create(self, name: str, *, project_id: str | None = None, **fields: Any) -> Any:
        path = f"/api/projects/{self._project_id(project_id)}/agents"
        return self._run(Call("POST", path, {"name": name, **fields}))

    def list(self, *, project_id: str | None = None) -> Any:
        return self._run(Call("GET", f"/api/projects/{self._project_id(project_id)}/agents"))

    def get(self, agent_id: str) -> Any:
        return self._run(Call("GET", f"/api/agents/{agent_id}"))

    def update(self, agent_id: str, **fields: Any) -> Any:
        return self._run(Call("PATCH", f"/api/agents/{agent_id}", fields))

    def delete(self, agent_id: str) -> Any:
        return self._run(Call("DELETE", f"/api/agents/{agent_id}"))

    def revisions(self, agent_id: str) -> Any:
        return self._run(Call("GET", f"/api/agents/{agent_id}/revisions"))

    def activations(self, agent_id: str) -> Any:
        return self._run(Call("GET", f"/api/agents/{agent_id}/activations"))

    def rollback(self, agent_id: str, revision_id: str) -> Any:
        return self._run(Call("POST", f"/api/agents/{agent_id}/revisions/{revision_id}/rollback"))

    def deactivate(self, agent_id: str, reason: str = "") -> Any:
        return self._run(Call("POST", f"/api/agents/{agent_id}/deactivate", {"reason": reason}))

    def metrics(self, agent_id: str, *, since: str | None = None, until: str | None = None) -> Any:
        params = _drop_none({"since": since, "until": until})
        return self._run(Call("GET", f"/api/agents/{agent_id}/metrics", params=params))

    def history(self, agent_id: str, bucket: Literal["hour", "day"] = "day") -> Any:
        path = f"/api/agents/{agent_id}/history"
        return self._run(Call("GET", path, params={"bucket": bucket}))

    def compare(self, agent_id: str, variant_ids: Iterable[str]) -> Any:
        params = {"variants": ",".join(str(v) for v in variant_ids)}
        return self._run(Call("GET", f"/api/agents/{agent_id}/compare", params=params))

    def sweep(self, agent_id: str, document: Mapping[str, Any], **options: Any) -> Any:
        """A draft experiment sweeping ``document`` around the agent's (or ``variant_id``'s)
        config; start it with ``experiments.start``."""
        body = {**document, **_drop_none(options)}
        return self._run(Call("POST", f"/api/agents/{agent_id}/experiments", body))


class Variants(_Resource):
    """Variants of an agent, resolution of the config to serve, and performance logging."""

    def create(self, agent_id: str, name: str, **overrides: Any) -> Any:
        path = f"/api/agents/{agent_id}/variants"
        return self._run(Call("POST", path, {"name": name, **overrides}))

    def list(self, agent_id: str) -> Any:
        return self._run(Call("GET", f"/api/agents/{agent_id}/variants"))

    def get(self, agent_id: str, variant_id: str) -> Any:
        return self._run(Call("GET", f"/api/agents/{agent_id}/variants/{variant_id}"))

    def update(
        self, agent_id: str, variant_id: str, *, inherit: Iterable[str] = (), **fields: Any
    ) -> Any:
        body = {**fields, **({"inherit": list(inherit)} if inherit else {})}
        return self._run(Call("PATCH", f"/api/agents/{agent_id}/variants/{variant_id}", body))

    def delete(self, agent_id: str, variant_id: str) -> Any:
        return self._run(Call("DELETE", f"/api/agents/{agent_id}/variants/{variant_id}"))

    def clone(
        self, agent_id: str, name: str, *, from_variant: str | None = None, **overrides: Any
    ) -> Any:
        """A new variant from the agent's base, or from ``from_variant`` with ``overrides``."""
        path = (
            f"/api/agents/{agent_id}/variants/{from_variant}/clone"
            if from_variant
            else f"/api/agents/{agent_id}/clone"
        )
        return self._run(Call("POST", path, {"name": name, **overrides}))

    def activate(self, agent_id: str, variant_id: str, reason: str = "") -> Any:
        path = f"/api/agents/{agent_id}/variants/{variant_id}/activate"
        return self._run(Call("POST", path, {"reason": reason}))

    def promote(self, agent_id: str, experiment_id: str, **options: Any) -> Any:
        """A variant from an experiment's best config (or ``config_hash``)."""
        body = {"experiment_id": str(experiment_id), **_drop_none(options)}
        return self._run(Call("POST", f"/api/agents/{agent_id}/variants/from-experiment", body))

    def resolve(
        self,
        agent: str,
        *,
        project_id: str | None = None,
        default: Mapping[str, Any] | None = None,
        unit_id: str | None = None,
    ) -> Any:
        """The config to run now for ``agent`` (a slug in the project, or an agent id).

        Cached per agent: no request within the client's ``ttl``, then a conditional request
        that costs a 304 while nothing changed. When the server cannot be reached the last
        config seen is served (``stale``), else ``default`` (``fallback``); without either
        an ``APIError`` is raised.
        """
        if _looks_like_id(agent):
            path = f"/api/agents/{agent}/config"
        else:
            slug = quote(agent, safe="")  # a path segment, whatever the caller passes
            path = f"/api/projects/{self._project_id(project_id)}/agents/{slug}/config"
        return self._run(Resolve(path, _drop_none({"unit_id": unit_id}), default))

    def log(
        self,
        served: Resolved,
        *,
        latency_ms: float | None = None,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        cost: float | None = None,
        success: bool = True,
        quality: float | None = None,
        error: str | None = None,
    ) -> Any:
        """Record one call made with ``served``, under the variant and revision it came from.
        A fallback config belongs to no agent: nothing is sent and the result is None. Token
        counts and cost left out are unknown: the metrics average them over the calls that
        gave them. A config resolved for a unit logs the unit, so the call counts toward the
        online experiment arm the unit is assigned to."""
        record = _drop_none(
            {
                "variant_id": served.variant_id,
                "revision": served.revision,
                "latency_ms": latency_ms,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "cost": cost,
                "success": success,
                "quality": quality,
                "error": error,
                "unit_id": served.unit_id,
            }
        )
        path = f"/api/agents/{served.agent_id}/performance"
        return self._run(Call("POST", path, record, skip=served.agent_id is None))


class Experiments(_Resource):
    """Sweeps: create from a document, start, follow and export."""

    def create(self, document: Mapping[str, Any], *, project_id: str | None = None) -> Any:
        path = f"/api/projects/{self._project_id(project_id)}/experiments"
        return self._run(Call("POST", path, dict(document)))

    def list(self, *, project_id: str | None = None) -> Any:
        return self._run(Call("GET", f"/api/projects/{self._project_id(project_id)}/experiments"))

    def get(self, experiment_id: str) -> Any:
        return self._run(Call("GET", f"/api/experiments/{experiment_id}"))

    def start(self, experiment_id: str) -> Any:
        return self._run(Call("POST", f"/api/experiments/{experiment_id}/start"))

    def cancel(self, experiment_id: str) -> Any:
        return self._run(Call("POST", f"/api/experiments/{experiment_id}/cancel"))

    def leaderboard(self, experiment_id: str) -> Any:
        return self._run(Call("GET", f"/api/experiments/{experiment_id}/leaderboard"))

    def compare(
        self,
        baseline_id: str,
        candidate_id: str | None = None,
        *,
        a: str | None = None,
        b: str | None = None,
        margin: float | None = None,
        limit: int | None = None,
    ) -> Any:
        """Config ``b`` of the candidate experiment against config ``a`` of the baseline, paired
        row by row, the candidate's worst rows first (each config left out: its experiment's
        best). Without ``candidate_id``, two configs of the baseline (``b`` left out: the
        runner-up). With ``margin``, ``gate`` says whether the candidate is a regression."""
        options = _drop_none({"a": a, "b": b, "margin": margin, "limit": limit})
        if candidate_id is None:
            path = f"/api/experiments/{baseline_id}/compare"
        else:
            path = "/api/experiments/compare"
            options |= {"baseline": str(baseline_id), "candidate": str(candidate_id)}
        return self._run(Call("GET", path, params=options))

    def export(self, experiment_id: str, fmt: ExportFormat = "best") -> Any:
        """The best config (``best``: a dict) or a rendering of it (``env``/``yaml``/``report``)."""
        path = f"/api/export/experiments/{experiment_id}/{fmt}"
        return self._run(Call("GET", path, parse=text) if fmt != "best" else Call("GET", path))


class Credentials(_Resource):
    """A project's provider keys, which its sweeps name with ``credential: NAME``. The secret
    goes to the server once per ``set``; no read returns it."""

    def _path(self, project_id: str | None, name: str | None = None) -> str:
        path = f"/api/projects/{self._project_id(project_id)}/credentials"
        return path if name is None else f"{path}/{quote(name, safe='')}"

    def set(self, name: str, *, provider: str, secret: str, project_id: str | None = None) -> Any:
        """Store the key, or replace it (a rotation)."""
        body = {"provider": provider, "secret": secret}
        return self._run(Call("PUT", self._path(project_id, name), body))

    def list(self, *, project_id: str | None = None) -> Any:
        return self._run(Call("GET", self._path(project_id)))

    def get(self, name: str, *, project_id: str | None = None) -> Any:
        return self._run(Call("GET", self._path(project_id, name)))

    def delete(self, name: str, *, project_id: str | None = None) -> Any:
        return self._run(Call("DELETE", self._path(project_id, name)))


def _looks_like_id(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
