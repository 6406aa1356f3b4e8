"""Online experiments from code: metric and experiment definitions, assignments, events and
results. The definitions and results are admin calls (a key with admin rights); assignment and
events are the public routes browsers use, so a service can assign its users and report what
they did exactly as a page would."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from promptlooper.client.calls import Call
from promptlooper.client.events import Delivery, EventOutbox, Flush
from promptlooper.client.outbox import Enqueue
from promptlooper.client.resources import Runner, _drop_none, _Resource

ADMIN = "/api/admin"


def _variant(response: Any) -> str | None:
    return response.json()["variant_key"]


class Online(_Resource):
    """``client.online``: define metrics and experiments, assign units, send events, read
    results and power. Events sent with ``track`` are queued and posted in the background;
    ``flush()`` (or closing the client) waits for them."""

    def __init__(self, run: Runner) -> None:
        super().__init__(run)
        self._events = EventOutbox()

    # --- definitions ------------------------------------------------------------------------

    def define_metric(
        self,
        name: str,
        *,
        source: str,
        aggregation: Literal["proportion", "mean", "ratio"],
        kind: Literal["event", "performance"] = "event",
        denominator: str | dict[str, str] | None = None,
        direction: Literal["higher", "lower"] = "higher",
        cuped: bool = False,
        cuped_window_days: int | None = None,
        description: str = "",
        project_id: str | None = None,
    ) -> Any:
        """A metric experiments can name: ``source`` is an event name (``kind="event"``) or a
        performance-log field (``kind="performance"``: cost, latency_ms, tokens_in,
        tokens_out, success, quality, calls). A ratio's ``denominator`` is its own source's
        name, or another source as ``{"kind": ..., "source": ...}`` (cost per conversion).
        ``cuped=True`` adjusts a mean of events by the same metric in the ``cuped_window_days``
        (default 14) before each unit's first exposure."""
        body = {
            "name": name,
            "kind": kind,
            "source": source,
            "aggregation": aggregation,
            "direction": direction,
            "cuped": cuped,
            "description": description,
        } | _drop_none(
            {
                "denominator": denominator,
                "project_id": project_id,
                "cuped_window_days": cuped_window_days,
            }
        )
        return self._run(Call("POST", f"{ADMIN}/metrics", body))

    def metrics(self, *, project_id: str | None = None) -> Any:
        params = _drop_none({"project_id": project_id})
        return self._run(Call("GET", f"{ADMIN}/metrics", params=params))

    def metric(self, name: str) -> Any:
        return self._run(Call("GET", f"{ADMIN}/metrics/{quote(name, safe='')}"))

    def delete_metric(self, name: str) -> Any:
        return self._run(Call("DELETE", f"{ADMIN}/metrics/{quote(name, safe='')}"))

    def create(self, experiment_key: str, definition: Mapping[str, Any]) -> Any:
        """Register an experiment: ``name``, ``cookie_name``, ``variants`` (control first or
        marked ``is_control``; ``agent_variant_id`` links an arm to an agent variant),
        ``primary_metric``, ``secondary_metrics``, ``guardrail_metrics`` ..."""
        body = {"experiment_key": experiment_key, **definition}
        return self._run(Call("POST", f"{ADMIN}/experiments", body))

    def update(self, experiment_key: str, definition: Mapping[str, Any]) -> Any:
        """Replace the definition; ``get``'s answer edited is a valid one."""
        path = f"{ADMIN}/experiments/{quote(experiment_key, safe='')}"
        return self._run(Call("PUT", path, dict(definition)))

    def get(self, experiment_key: str) -> Any:
        return self._run(Call("GET", f"{ADMIN}/experiments/{quote(experiment_key, safe='')}"))

    def list(self, *, include_archived: bool = False) -> Any:
        params = {"include_archived": include_archived}
        return self._run(Call("GET", f"{ADMIN}/experiments", params=params))

    def archive(self, experiment_key: str) -> Any:
        path = f"{ADMIN}/experiments/{quote(experiment_key, safe='')}/archive"
        return self._run(Call("POST", path))

    def resume_arm(self, experiment_key: str, variant_key: str) -> Any:
        """Serve an arm a guardrail stopped its own variant again; the audited event (who
        resumed it, which metric had stopped it). A ``ConflictError`` when the arm is not
        stopped, ``NotFoundError`` when the experiment has no such arm. The guardrail does not
        stop a resumed arm again."""
        key, arm = quote(experiment_key, safe=""), quote(variant_key, safe="")
        return self._run(Call("POST", f"{ADMIN}/experiments/{key}/arms/{arm}/resume"))

    # --- assignment and events --------------------------------------------------------------

    def assign(self, experiment_key: str, unit_id: str, *, path: str | None = None) -> Any:
        """The unit's variant key, or None when it is not in the experiment (coverage,
        routes, a stopped experiment)."""
        url = f"/api/experiments/{quote(experiment_key, safe='')}/assignment"
        params = _drop_none({"unit_id": unit_id, "path": path})
        return self._run(Call("GET", url, params=params, parse=_variant))

    def track(
        self,
        experiment_key: str,
        variant_key: str,
        unit_id: str,
        event_name: str,
        *,
        value: float | None = None,
        path: str = "",
        event_id: str | None = None,
        timestamp: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        """Queue one event of ``unit_id`` (an impression exposes it) and return at once; the
        events go out in batches in the background, each stamped with the time it was
        tracked unless ``timestamp`` says otherwise."""
        body = _event(experiment_key, variant_key, unit_id, event_name, value, path,
                      event_id, timestamp, metadata)  # fmt: skip
        return self._run(Enqueue(self._events, f"event {event_name!r}", body))

    def flush(self) -> Any:
        """Wait until every event queued with ``track`` has been sent; the ``Delivery`` says
        how many the server accepted, rejected (and why) or never got."""
        return self._run(Flush(self._events))

    def delivery(self) -> Delivery:
        """What became of the queued events so far, without waiting."""
        return self._events.delivery()

    def send(self, events: Iterable[Mapping[str, Any]]) -> Any:
        """Post up to 1,000 events now (each as the batch endpoint takes it:
        ``experiment_key``, ``variant_key``, ``session_id``, ``event_name``, ``value`` ...)
        and return the server's verdict on each."""
        return self._run(Call("POST", "/api/experiments/batch", {"events": list(events)}))

    # --- results ----------------------------------------------------------------------------

    def results(
        self,
        experiment_key: str | None = None,
        *,
        correction: Literal["holm", "bh"] = "holm",
        prior: Literal["flat", "proper"] = "flat",
    ) -> Any:
        """One experiment's results (every one's without a key): per arm the counts, each
        treatment's statistics against control for the built-in and defined metrics (CUPED
        metrics with a ``cuped`` block), an ``offline`` block for arms promoted from a sweep,
        and the health."""
        params = _drop_none(
            {"experiment_key": experiment_key, "correction": correction, "prior": prior}
        )
        return self._run(Call("GET", "/api/v1/experiments/results", params=params))

    def power(self, experiment_key: str | None = None, **options: Any) -> Any:
        """Power and duration: for ``experiment_key``, the power reached against ``lift``
        on ``metric`` and the days left; without, a plan from ``baseline``, ``variance``,
        ``units_per_day``, ``arms`` and ``days`` or ``lift``."""
        params = _drop_none({"experiment_key": experiment_key, **options})
        return self._run(Call("GET", "/api/v1/experiments/power", params=params))


def _event(
    experiment_key: str,
    variant_key: str,
    unit_id: str,
    event_name: str,
    value: float | None,
    path: str,
    event_id: str | None,
    timestamp: datetime | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        "experiment_key": experiment_key,
        "variant_key": variant_key,
        "session_id": unit_id,
        "event_name": event_name,
        "path": path,
    } | _drop_none(
        {
            "value": value,
            "event_id": event_id,
            # Stamped when tracked, not when sent: a batch holds a unit's events before and
            # after its impression, which CUPED tells apart by their times.
            "timestamp": (timestamp or datetime.now(UTC)).isoformat(),
            "metadata": dict(metadata) if metadata is not None else None,
        }
    )
