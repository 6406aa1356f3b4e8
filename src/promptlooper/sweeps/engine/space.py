"""Search spaces and the strategies that pick configs from them.

A space maps each parameter to its list of values; a config is one value per parameter. The
strategy seam (``STRATEGIES``) is where smarter searches plug in: each turns a space plus its
settings into the ordered list of configs to run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Space = Mapping[str, Sequence[Any]]
Config = dict[str, Any]
Strategy = Callable[[Space, Mapping[str, Any]], list[Config]]


def space_size(space: Space) -> int:
    """How many configs the grid holds (a range counts as one value: only Optuna samples it)."""
    return math.prod(len(values) for values in space.values()) if space else 1


def _config_at(space: Space, index: int) -> Config:
    """The ``index``-th config of the grid, in ``itertools.product`` order."""
    config: Config = {}
    for key in reversed(list(space)):
        values = space[key]
        index, position = divmod(index, len(values))
        config[key] = values[position]
    return {key: config[key] for key in space}


def grid(space: Space, _options: Mapping[str, Any] | None = None) -> list[Config]:
    """Every combination, in a stable order (the first parameter varies slowest)."""
    keys = list(space)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*space.values())]


def random_sample(space: Space, options: Mapping[str, Any]) -> list[Config]:
    """``n`` distinct configs drawn uniformly with ``seed``, without building the whole grid."""
    size = space_size(space)
    n = min(int(options["n"]), size)
    picks = random.Random(options.get("seed", 0)).sample(range(size), n)
    return [_config_at(space, index) for index in sorted(picks)]


def probe(space: Space, _options: Mapping[str, Any] | None = None) -> list[Config]:
    """Configs that between them use every listed value and both ends of every range: what a
    sampled search's plan is checked with (each template, model and parameter value seen
    once) before any config is proposed."""
    first = {key: _ends(values)[0] for key, values in space.items()}
    configs = [first]
    for key, values in space.items():
        configs += [{**first, key: value} for value in _ends(values)[1:]]
    return configs


def _ends(values: Any) -> list[Any]:
    if isinstance(values, Mapping):
        return [values["low"], values["high"]]
    return list(values)


STRATEGIES: dict[str, Strategy] = {
    "grid": grid,
    "random": random_sample,
    "racing": grid,
    "optuna": probe,
}


def select_configs(space: Space, strategy: str, options: Mapping[str, Any]) -> list[Config]:
    return STRATEGIES[strategy](space, options)


def config_hash(config: Mapping[str, Any]) -> str:
    """A short, stable identity for a config: the same values always give the same hash."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
