"""Creating a large experiment's run rows leaves the event loop free for other requests."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid

from sqlalchemy import func, select

from promptlooper.sweeps.execution import prepare_runs
from promptlooper.sweeps.models import Experiment, Run
from promptlooper.sweeps.plan import compile_plan
from promptlooper.sweeps.spec import parse_spec
from tests.sweeps.conftest import create, document

ROW_COUNT = 12_000
ROWS = [{"input": f"ticket {i} was charged twice", "expected": "billing"} for i in range(ROW_COUNT)]
TICK = 0.005
STALL_BOUND = 0.5
"""Far above the few milliseconds one batch holds the loop and a full garbage collection of
the process (tens of ms, a few times that on a busy machine), far below what creating these
96,000 runs in one go holds it (seconds)."""


async def test_creating_runs_yields_to_the_event_loop_and_is_idempotent(
    client, owner, project_id, sessionmaker
):
    created = await create(client, owner, project_id, document(dataset={"rows": ROWS}))
    async with sessionmaker() as session:
        experiment = await session.get(Experiment, uuid.UUID(created["id"]))
    assert experiment is not None
    plan = compile_plan(parse_spec(experiment.spec))
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            ticks.append(now - last - TICK)
            last = now

    # What earlier tests of the suite left on the heap is set aside, so that a full garbage
    # collection costs what this process's own objects cost, as in a server.
    gc.collect()
    gc.freeze()
    try:
        ticking = asyncio.create_task(ticker())
        pending = await prepare_runs(sessionmaker, experiment, plan)
        done.set()
        await ticking
    finally:
        gc.unfreeze()
    again = await prepare_runs(sessionmaker, experiment, plan)
    async with sessionmaker() as session:
        rows = await session.scalar(select(func.count()).where(Run.experiment_id == experiment.id))

    assert pending == again == rows == 8 * ROW_COUNT
    assert len(ticks) > 10
    assert max(ticks) < STALL_BOUND, sorted(ticks)[-5:]
