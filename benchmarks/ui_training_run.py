"""Server-side render time and size of a training run's page with a long step log.

A fresh SQLite database gets a run on ``tiny-test`` with ``--steps`` logged steps (a decaying,
noisy loss, as the step log writes them). The run's page and its polled curves fragment are
requested in process through the ASGI app, as a logged-in user, ``--repeats`` times each: the
median time, the HTML size, the bytes of chart JSON in it and the points of the loss curve
are printed.

    .venv/bin/python -m benchmarks.ui_training_run [--steps 10000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import tempfile
from pathlib import Path

from sqlalchemy import insert

from benchmarks.ui_server import bench_app
from promptlooper.auth.principal import Principal
from promptlooper.auth.service import get_user_by_username
from promptlooper.training import service
from promptlooper.training.models import TrainingStep
from promptlooper.training.schemas import RunCreate

TARGET_BYTES = 300_000
CHART = re.compile(r'<script type="application/json" id="([^"]+)">(.*?)</script>', re.S)


async def _seed(app: object, steps: int) -> str:
    sessionmaker = app.state.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        user = await get_user_by_username(session, "bench")
        assert user is not None
        owner = Principal(user.id, user.username, is_admin=False, method="local")
        registry = app.state.trainer.registry  # type: ignore[attr-defined]
        run = await service.create_run(
            session, owner, registry, RunCreate(base_model="tiny-test", name="long run")
        )
        rows = [
            {
                "run_id": run.id,
                "step": i + 1,
                "loss": 3.0 * math.exp(-i / 3000) + 0.05 * math.sin(i * 0.7) + 0.5,
                "tokens": 2000 + (i * 37) % 500,
                "grad_norm": 1.0 + 0.3 * math.cos(i * 0.13),
                "learning_rate": 1e-4 * min(1.0, (i + 1) / 500),
            }
            for i in range(steps)
        ]
        for start in range(0, len(rows), 2000):
            await session.execute(insert(TrainingStep), rows[start : start + 2000])
        run.step = steps
        await session.commit()
        return str(run.id)


async def measure(steps: int, repeats: int, folder: Path) -> list[tuple[str, float, int, int, int]]:
    results = []
    async with bench_app(folder) as bench:
        run_id = await _seed(bench.app, steps)
        pages = {
            f"run page ({steps:,} steps)": f"/ui/training/runs/{run_id}",
            "curves fragment (polled)": f"/ui/training/runs/{run_id}/curves",
        }
        for name, path in pages.items():
            ms, response, _ = await bench.time_page(path, repeats)
            charts = CHART.findall(response.text)
            chart_bytes = sum(len(body.encode()) for _, body in charts)
            loss = next(json.loads(body) for chart_id, body in charts if chart_id == "curve-loss")
            results.append((name, ms, len(response.content), chart_bytes, len(loss["x"])))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = asyncio.run(measure(args.steps, args.repeats, Path(folder)))
    print("| page | median ms | HTML bytes | chart JSON bytes | loss curve points |")
    print("| --- | --- | --- | --- | --- |")
    for name, ms, size, chart_bytes, points in results:
        flag = " (over target)" if size > TARGET_BYTES else ""
        print(f"| {name} | {ms:.1f} | {size:,}{flag} | {chart_bytes:,} | {points:,} |")


if __name__ == "__main__":
    main()
