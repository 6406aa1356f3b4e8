"""A training run's step metrics as chart data a page can afford to send, and the sentence that
says how the run is going.

A long run has more steps than a chart has pixels: past ``MAX_POINTS`` each curve keeps the
lowest and the highest value of each bucket of steps (a spike or a dip stays visible, which
every-k-th sampling would drop) and always the last step, so the line ends where the run is.
Values are rounded to five significant digits, far finer than a chart can show, which keeps
the JSON small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

MAX_POINTS = 1000
"""Points per curve at most (plus the last step): enough for a full-width chart."""
TREND_TOLERANCE = 0.02
"""A relative change of the loss smaller than this is flat."""

Trend = Literal["learning", "rising", "flat"]


class StepValues(Protocol):
    """One logged step's metrics (a ``TrainingStep`` or a row of ``service.step_series``)."""

    @property
    def step(self) -> int: ...
    @property
    def loss(self) -> float: ...
    @property
    def tokens(self) -> int: ...
    @property
    def grad_norm(self) -> float: ...
    @property
    def learning_rate(self) -> float: ...


def _finite(value: float) -> float | None:
    return float(f"{value:.5g}") if math.isfinite(value) else None


def downsample(
    x: Sequence[int], values: Sequence[float], max_points: int = MAX_POINTS
) -> tuple[list[int], list[float | None]]:
    """``(x, values)`` with at most ``max_points + 1`` points; a non-finite value is a gap."""
    if len(x) <= max_points:
        return list(x), [_finite(v) for v in values]
    buckets = max(max_points // 2, 1)
    size = math.ceil(len(x) / buckets)
    keep: list[int] = []
    for start in range(0, len(x), size):
        present = [i for i in range(start, min(start + size, len(x))) if math.isfinite(values[i])]
        if not present:
            keep.append(start)  # the gap stays a gap
            continue
        low = min(present, key=values.__getitem__)
        high = max(present, key=values.__getitem__)
        keep.extend(sorted({low, high}))
    if keep[-1] != len(x) - 1:
        keep.append(len(x) - 1)
    return [x[i] for i in keep], [_finite(values[i]) for i in keep]


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    unit: str
    read: Callable[[StepValues], float]
    color: str
    smooth: bool
    may_log: bool


METRICS = (
    Metric("loss", "loss", "per token", lambda s: s.loss, "accent", True, True),
    Metric("grad_norm", "gradient norm", "L2", lambda s: s.grad_norm, "warn", True, True),
    Metric(
        "learning_rate", "learning rate", "AdamW", lambda s: s.learning_rate, "muted", False, True
    ),
    Metric("tokens", "tokens", "per step", lambda s: float(s.tokens), "good", False, False),
)


def chart_specs(steps: Sequence[StepValues], *, log: bool) -> list[dict[str, Any]]:
    """One chart per metric, as ``static/charts.js`` reads them; ``log`` draws loss and
    gradient norm on a log scale where every value is positive."""
    numbers = [s.step for s in steps]
    specs = []
    for metric in METRICS:
        raw = [metric.read(s) for s in steps]
        x, values = downsample(numbers, raw)
        positive = all(v is not None and v > 0 for v in values)
        specs.append(
            {
                "id": f"curve-{metric.key}",
                "title": metric.label,
                "x": x,
                "time": False,
                "xlabel": "step",
                "ylabel": metric.unit,
                "log": log and metric.may_log and metric.smooth and positive,
                "series": [
                    {
                        "label": metric.label,
                        "values": values,
                        "color": metric.color,
                        "smooth": metric.smooth,
                    }
                ],
            }
        )
    return specs


@dataclass(frozen=True, slots=True)
class Summary:
    """What the top of a run's page says: where it is and which way its loss goes."""

    step: int
    loss: float
    first_step: int
    change: float
    """Latest loss minus the first step's."""
    trend: Trend
    window: int
    """How many steps each end of the trend compares (the mean of the first and last ones)."""

    @property
    def change_text(self) -> str:
        """``↓ 0.410`` / ``↑ 0.020``: the direction in a sign as well as a number."""
        if self.change == 0:
            return "± 0"
        return f"{'↓' if self.change < 0 else '↑'} {abs(self.change):.3f}"


def summarise(steps: Sequence[StepValues]) -> Summary | None:
    """None before the first step. The trend compares the mean loss of the first and last
    tenth of the steps (1 to 50 of them), so one noisy batch does not decide it."""
    finite = [s for s in steps if math.isfinite(s.loss)]
    if not finite:
        return None
    window = min(max(len(finite) // 10, 1), 50)
    first = sum(s.loss for s in finite[:window]) / window
    last = sum(s.loss for s in finite[-window:]) / window
    relative = (last - first) / abs(first) if first else 0.0
    trend: Trend = "flat"
    if len(finite) > 1 and relative < -TREND_TOLERANCE:
        trend = "learning"
    elif len(finite) > 1 and relative > TREND_TOLERANCE:
        trend = "rising"
    return Summary(
        step=finite[-1].step,
        loss=finite[-1].loss,
        first_step=finite[0].step,
        change=finite[-1].loss - finite[0].loss,
        trend=trend,
        window=window,
    )
