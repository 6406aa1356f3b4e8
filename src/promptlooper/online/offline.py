"""Offline meets online: beside each arm of an experiment over agent variants, the score its
variant had in the sweep it was promoted from, and beside each treatment's observed lift on
the primary metric the lift that sweep predicted. A team learns whether its offline
evaluation predicts production.

The scores live with the variants, a domain built on this one, so the caller passes the
lookup in (``SweepScores``), as it does for the variants' existence."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.online.models import OnlineExperiment

SweepScores = Callable[
    [AsyncSession, Collection[uuid.UUID]], Awaitable[dict[uuid.UUID, dict[str, Any]]]
]
"""For the given agent variant ids, those promoted from a sweep: ``sweep_id``,
``sweep_name``, ``config_hash`` and ``score``."""

BUILT_IN = {"conversion": "conversion_rate"}
"""A built-in primary metric's name in the results' ``stats`` block."""


async def attach(
    session: AsyncSession,
    experiment: OnlineExperiment,
    result: dict[str, Any],
    scores: SweepScores,
) -> None:
    """Add ``offline`` to each arm of ``result`` (``results.compute``'s answer for
    ``experiment``) whose agent variant came from a sweep: the sweep and the score; for a
    treatment also the relative lift the scores predict against control's and the relative
    lift observed online on the primary metric (None while either is unknown), and whether
    they point the same way. Arms without a promoted variant get nothing."""
    links = {
        v["variant_key"]: uuid.UUID(str(v["agent_variant_id"]))
        for v in experiment.variants
        if v.get("agent_variant_id")
    }
    if not links:
        return
    found = await scores(session, list(links.values()))
    by_arm = {key: found[link] for key, link in links.items() if link in found}
    if not by_arm:
        return
    arms = result["variants"]
    control = by_arm.get(arms[0]["variant_key"])
    for index, arm in enumerate(arms):
        offline = by_arm.get(arm["variant_key"])
        if offline is None:
            continue
        arm["offline"] = dict(offline)
        if index == 0:
            continue
        predicted = None
        if control is not None and control["score"]:
            predicted = offline["score"] / control["score"] - 1
        observed = _observed(experiment.primary_metric, arm)
        arm["offline"] |= {
            "metric": experiment.primary_metric,
            "predicted_lift": predicted,
            "observed_lift": observed,
            "agrees": None
            if predicted is None or observed is None
            else (predicted > 0) == (observed > 0),
        }


def _observed(metric: str, arm: dict[str, Any]) -> float | None:
    """The treatment's relative lift on ``metric`` as the results report it."""
    if metric in (arm.get("metrics") or {}):
        block = arm["metrics"][metric]
    else:
        block = (arm.get("stats") or {}).get(BUILT_IN.get(metric, ""), {})
    return block.get("relative_lift")
