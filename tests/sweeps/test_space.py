"""Search spaces: the grid, random sampling, config identity."""

from __future__ import annotations

from promptlooper.sweeps.engine.space import config_hash, grid, random_sample, space_size

SPACE = {"model": ["a", "b"], "temperature": [0.0, 0.7], "prompt": ["p1", "p2", "p3"]}


def test_grid_is_the_product_in_a_stable_order():
    configs = grid(SPACE)

    assert len(configs) == space_size(SPACE) == 12
    assert configs[0] == {"model": "a", "temperature": 0.0, "prompt": "p1"}
    assert configs[1] == {"model": "a", "temperature": 0.0, "prompt": "p2"}
    assert configs[-1] == {"model": "b", "temperature": 0.7, "prompt": "p3"}
    assert len({config_hash(c) for c in configs}) == 12


def test_random_sampling_is_seeded_distinct_and_inside_the_grid():
    first = random_sample(SPACE, {"n": 5, "seed": 7})
    again = random_sample(SPACE, {"n": 5, "seed": 7})
    other = random_sample(SPACE, {"n": 5, "seed": 8})
    everything = random_sample(SPACE, {"n": 100, "seed": 1})

    assert first == again
    assert first != other
    assert len({config_hash(c) for c in first}) == 5
    assert all(c in grid(SPACE) for c in first)
    assert sorted(map(config_hash, everything)) == sorted(map(config_hash, grid(SPACE)))


def test_random_sampling_does_not_build_huge_grids():
    huge = {f"p{i}": list(range(10)) for i in range(12)}  # 10^12 configs
    configs = random_sample(huge, {"n": 3, "seed": 0})
    assert len(configs) == 3
    assert all(set(c) == set(huge) for c in configs)


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
