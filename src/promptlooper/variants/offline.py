"""The offline side of an online experiment over agent variants: each promoted variant's
sweep score, as promotion recorded it in the variant's origin, for the results to set beside
what production measured (``online/offline.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.sweeps.models import Experiment
from promptlooper.variants.models import Variant


async def sweep_scores(
    session: AsyncSession, variant_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """For each of ``variant_ids`` promoted from a sweep: the sweep (id and name), the
    promoted config's hash and its score there. Variants made by hand are left out; a sweep
    deleted since keeps its id and score, without a name."""
    found = await session.execute(
        select(Variant.id, Variant.origin).where(Variant.id.in_(set(variant_ids)))
    )
    origins = {
        variant_id: origin
        for variant_id, origin in found.all()
        if origin and origin.get("experiment_id") and origin.get("score") is not None
    }
    sweep_ids = {uuid.UUID(o["experiment_id"]) for o in origins.values()}
    names = dict(
        (await session.execute(select(Experiment.id, Experiment.name).where(
            Experiment.id.in_(sweep_ids)))).all()
    ) if sweep_ids else {}  # fmt: skip
    return {
        variant_id: {
            "sweep_id": origin["experiment_id"],
            "sweep_name": names.get(uuid.UUID(origin["experiment_id"])),
            "config_hash": origin.get("config_hash"),
            "score": float(origin["score"]),
        }
        for variant_id, origin in origins.items()
    }
