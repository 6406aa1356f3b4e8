"""Sticky assignment for bandits: a unit keeps the arm it was first given.

Hashing alone cannot keep units in place while weights change: the hash range is cut by the
weights, so moving a boundary moves every unit between the old and the new boundary to another
arm, and a bandit moves its boundaries at every update. Like GrowthBook's sticky bucketing, the
first assignment is therefore stored (``UnitAssignment``) and read back from then on; only units
never seen before are hashed with the weights in force. The browser script keeps the same
promise with the experiment's cookie, which holds the arm once chosen. The caller commits.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.upsert import insert_ignore
from promptlooper.online import assignment, traffic
from promptlooper.online.models import OnlineExperiment, UnitAssignment


async def arms(
    session: AsyncSession,
    experiment: OnlineExperiment,
    unit_ids: Collection[str],
    *,
    store: bool = True,
) -> dict[str, str]:
    """Unit id → its stuck arm (before any guardrail stop), assigning the new units with the
    weights in force (and storing them unless ``store`` is off, for paths that only read);
    units outside the coverage are left out and not stored."""
    key = experiment.experiment_key
    wanted = [u for u in dict.fromkeys(unit_ids) if u]
    if not wanted:
        return {}
    found = await stored(session, key, wanted)
    percents = [w * 100 for w in traffic.hashing_weights(experiment)]
    assign = assignment.assigner(experiment.hash_seed, percents, experiment.coverage)
    new = []
    for unit_id in wanted:
        if unit_id in found:
            continue
        index = assign(unit_id)
        if index is not None:
            new.append(
                {
                    "experiment_key": key,
                    "unit_id": unit_id,
                    "variant_key": experiment.variants[index]["variant_key"],
                }
            )
    if not store:
        return found | {row["unit_id"]: row["variant_key"] for row in new}
    if new:
        await insert_ignore(session, UnitAssignment.__table__, new)  # type: ignore[arg-type]
        # Another request may have stored some of them first: its arm is the one that holds.
        found |= await stored(session, key, [row["unit_id"] for row in new])
    return found


async def stored(session: AsyncSession, key: str, unit_ids: Collection[str]) -> dict[str, str]:
    """Unit id → its stored arm, for the units the server has given one."""
    rows = await session.execute(
        select(UnitAssignment.unit_id, UnitAssignment.variant_key).where(
            UnitAssignment.experiment_key == key, UnitAssignment.unit_id.in_(list(unit_ids))
        )
    )
    return dict(rows.all())
