"""Racing: every config on a first slice of rows, the clear losers eliminated, the rest on.

Rows are used in an order shuffled with the search's seed, a slice at a time (each twice the
last). After each slice the configs still in the race are compared with the leader
(``racing.eliminate``), and a config whose every run failed is dropped once others have
scores; the losers' pending runs are skipped. The race ends when one config is left, the rows
run out, or the budget would be crossed; whatever is still pending then is skipped. Decisions
are stored as they are made, so a resumed race keeps them.
"""

from __future__ import annotations

from promptlooper.db.engine import create_sessionmaker, read_only
from promptlooper.sweeps.engine.space import config_hash
from promptlooper.sweeps.execution import prepare_runs
from promptlooper.sweeps.search import store
from promptlooper.sweeps.search.racing import eliminate, row_order, slice_ends
from promptlooper.sweeps.search.runner import (
    OnStart,
    Step,
    failed_rows,
    pending_runs,
    row_scores,
    skip,
)


async def race(step: Step, on_start: OnStart | None) -> None:
    search, progress = step.search, step.progress
    settings = search.plan.spec.search
    pending = await prepare_runs(search.sessionmaker, search.experiment, search.plan)
    async with create_sessionmaker(read_only(search.engine))() as session:
        eliminated = {
            e.config_hash for e in await store.eliminations(session, search.experiment.id)
        }
    configs = list(dict.fromkeys(config_hash(c) for c in search.plan.configs))
    order = row_order(len(search.plan.rows), settings.seed)
    position = {row: index for index, row in enumerate(order)}
    ends = slice_ends(len(order), settings.first_slice)
    progress.total = pending
    if on_start is not None:
        on_start(pending, search.plan.total_runs)

    for index, end in enumerate(ends):
        survivors = [digest for digest in configs if digest not in eliminated]
        progress.note = (
            f"racing: slice {index + 1}/{len(ends)} ({end} rows), {len(survivors)} configs "
            f"in, {len(eliminated)} eliminated, {step.limit.describe()}"
        )
        runs = [r for r in await pending_runs(search, survivors) if position[r[2]] < end]
        runs.sort(key=lambda r: (position[r[2]], r[3], r[1]))
        await step.run(step.tasks(runs))
        if progress.spent_out:
            break
        scores = await row_scores(search, survivors)
        failed = await failed_rows(search, survivors)
        decisions = eliminate(scores, settings.alpha, failed)
        if decisions:
            async with search.sessionmaker() as session:
                await store.record(session, search.experiment.id, decisions, index)
                await session.commit()
            lost = {d.config_hash for d in decisions}
            progress.total -= await skip(search, lost)
            eliminated |= lost
        if len(configs) - len(eliminated) <= 1:
            break
    progress.total -= await skip(search)
    progress.note = (
        f"racing: done, {len(configs) - len(eliminated)} of {len(configs)} configs left, "
        f"{step.limit.describe()}" + (" (budget reached)" if progress.spent_out else "")
    )
