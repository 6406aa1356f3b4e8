"""Where `promptlooper sweep run` peaks: its resident memory sampled in each phase.

Runs the CLI's `sweep run FILE --no-cache` in this process with a thread sampling the
resident set (`/proc/self/statm`) every 20 ms, and marks each phase as the CLI enters it:
start-up (imports, reading the sweep file), creating the experiment, creating its run rows,
executing, giving back what the execution freed, the leaderboard. Prints each phase's peak
and the process's high-water mark. Linux only. Run from the repository root, with
`DATABASE_URL` a migrated database and the sweep file from `sweep_memory.py`'s scenario:

    .venv/bin/python -m benchmarks.sweep_phases SWEEP_FILE
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def resident_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_KB


class Phases:
    """The peak resident set of each phase, in the order they began."""

    def __init__(self) -> None:
        self.current = "start-up"
        self.peaks: dict[str, int] = {self.current: resident_kb()}

    def sample(self) -> None:
        found = resident_kb()
        self.peaks[self.current] = max(self.peaks.get(self.current, 0), found)

    def enter(self, name: str) -> None:
        self.sample()
        self.current = name
        self.sample()

    def watch(self) -> None:
        while True:
            self.sample()
            time.sleep(0.02)


def _marked(phases: Phases, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    async def marked(*args: Any, **kwargs: Any) -> Any:
        phases.enter(name)
        return await function(*args, **kwargs)

    return marked


def main() -> None:
    phases = Phases()
    threading.Thread(target=phases.watch, daemon=True).start()
    import promptlooper.cli.sweeps as cli
    import promptlooper.sweeps.execution as execution
    from promptlooper.cli.main import app

    cli._create = _marked(phases, "creating the experiment", cli._create)
    execution.prepare_runs = _marked(phases, "creating the run rows", execution.prepare_runs)
    execution.execute = _marked(phases, "executing", execution.execute)
    cli._show_leaderboard = _marked(phases, "leaderboard", cli._show_leaderboard)
    release = cli.release_freed_memory

    def released() -> None:
        phases.enter("giving back freed memory")
        release()

    cli.release_freed_memory = released
    try:
        app(["sweep", "run", sys.argv[1], "--no-cache"], standalone_mode=False)
    finally:
        phases.enter("end")
        for name, peak in phases.peaks.items():
            print(f"{name}: peak {peak / 1024:.1f} MB", file=sys.stderr)
        with open("/proc/self/status") as status:
            hwm = next(line.split()[1] for line in status if line.startswith("VmHWM"))
        print(f"high-water mark (VmHWM): {int(hwm) / 1024:.1f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
