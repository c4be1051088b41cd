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


def _tuner_name_creator_size(tmp_path, cfg, trials) -> int:
    import cloudpickle

    from ftsweep.sweep.tuner import make_tuner

    class Quiet:
        def note(self, message):
            pass

    def trainable(config):
        pass

    tuner = make_tuner(
        cfg, trainable, trials, cfg.model_dump(), str(tmp_path), "name-size", Quiet()
    )
    tune_config = tuner._local_tuner._tune_config  # what Tune pickles into every trial's state
    assert tune_config.trial_name_creator is tune_config.trial_dirname_creator
    return len(cloudpickle.dumps(tune_config.trial_name_creator))


def test_a_grid_trials_saved_name_creator_does_not_hold_the_grid(tiny_config, tmp_path):
    """Tune saves the name creator with every trial: one that held the grid's trials made the
    saved state grow with trials x trials (3.3 GB for 1,000, and a restore that ran out of memory)."""
    small = _trials(tiny_config("sweep=smoke", "sweep.seeds=1"))
    large = _trials(tiny_config("sweep=smoke", "sweep.seeds=20"))
    assert len(large) >= 20 * len(small)
    cfg = tiny_config("sweep=smoke")
    sizes = [_tuner_name_creator_size(tmp_path / str(len(t)), cfg, t) for t in (small, large)]
    assert sizes[0] == sizes[1] < 1_000
    from ftsweep.sweep.tuner import grid_trial_name

    some_id = next(iter(large))
    assert grid_trial_name(type("T", (), {"config": {GRID_KEY: some_id}})()) == some_id
