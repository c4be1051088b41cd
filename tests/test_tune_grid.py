"""A grid's points as Ray Tune makes them: each names its trial by id, and the trial's config
is found beside the grid, not copied into every point."""

from __future__ import annotations

from ftsweep.sweep.space import expand
from ftsweep.sweep.trainable import GRID_KEY, trial_of
from ftsweep.sweep.tuner import grid_space


def _trials(cfg) -> dict[str, dict]:
    return {
        s.trial_id: {
            "trial_id": s.trial_id,
            "run_name": s.run_name,
            "config": s.config.model_dump(),
        }
        for s in expand(cfg)
    }


def test_every_point_of_the_grid_names_one_trial_and_nothing_else(tiny_config):
    from ray.tune.search.variant_generator import generate_variants

    cfg = tiny_config("sweep=smoke", "sweep.seeds=3")
    trials = _trials(cfg)
    points = [point for _, point in generate_variants(grid_space(trials))]
    assert [p.keys() for p in points] == [{GRID_KEY}] * len(trials)
    assert [p[GRID_KEY] for p in points] == list(trials)  # every trial once, in the sweep's order
    for point in points:
        spec = trial_of(point, cfg, trials)
        assert spec.config == trial_of({"trial": trials[spec.trial_id]}, cfg).config
        assert spec.run_name == trials[spec.trial_id]["run_name"]


def test_a_searcher_sweep_has_no_grid_axis():
    assert grid_space({}) == {}  # its points come from the searcher's conditional space
