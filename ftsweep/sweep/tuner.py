"""The Ray Tune run of a sweep: its state folder, searcher, scheduler, and the Tuner itself."""

from __future__ import annotations

import hashlib
import json
import os

from ftsweep.config import Config, validate
from ftsweep.sweep.space import TrialSpec, define_by_run
from ftsweep.sweep.trainable import GRID_KEY, SCHEDULE_METRIC, trial_of


def ray_experiment_name(cfg: Config, specs: list[TrialSpec]) -> str:
    """Ray's state folder: one per search space, so an edited sweep starts afresh in Ray while
    MLflow still finds every trial that was already recorded by its id."""
    if cfg.sweep.algorithm == "grid":
        identity = "\n".join(s.trial_id for s in specs)
    else:
        identity = json.dumps(
            [
                cfg.sweep.algorithm,
                cfg.sweep.num_samples,
                [s.model_dump() for s in cfg.sweep.space],
                cfg.train.model_dump(),
            ],
            sort_keys=True,
            default=str,
        )
    digest = hashlib.sha1(identity.encode()).hexdigest()[:8]
    return f"{cfg.sweep.name}-{digest}"


def _searcher(cfg: Config):
    if cfg.sweep.algorithm == "grid":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler = (
        optuna.samplers.TPESampler(seed=cfg.train.seed, n_startup_trials=cfg.sweep.optuna_startup)
        if cfg.sweep.algorithm == "optuna"
        else optuna.samplers.RandomSampler(seed=cfg.train.seed)
    )
    return OptunaSearch(
        space=define_by_run(cfg.sweep.space), metric=SCHEDULE_METRIC, mode="min", sampler=sampler
    )


def _scheduler(cfg: Config):
    if cfg.sweep.scheduler == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    t = cfg.train
    most_tokens = t.max_steps * t.batch_size * t.grad_accum * t.seq_len  # an upper bound
    return ASHAScheduler(
        time_attr="tokens",
        metric=SCHEDULE_METRIC,
        mode="min",
        max_t=most_tokens,
        grace_period=cfg.sweep.asha.grace_period_tokens,
        reduction_factor=cfg.sweep.asha.reduction_factor,
    )


def grid_space(trials: dict[str, dict]) -> dict:
    """Tune's parameter space for a grid: one axis of trial ids (none for a searcher). Ray deep-
    copies the whole space for every point it generates; with the trials' configs in it, 1,000
    trials took 128 s to set up and 10,000 hours, with ids alone seconds."""
    from ray import tune

    return {GRID_KEY: tune.grid_search(list(trials))} if trials else {}


def grid_trial_name(trial) -> str:
    """A grid trial's name and folder: the trial id its point names. A module function, not a
    closure: Tune pickles the name creator into every trial's saved state, and one that held the
    grid's trials made that state O(trials^2) (3.3 GB for 1,000 trials)."""
    return trial.config[GRID_KEY]


def check_ray_state(path: str) -> None:
    """Tune's restore unpickles tuner.pkl and the trials' state: the folder and everything in
    it must be this user's own, writable by no one else, without links (`ftsweep.trust`)."""
    from ftsweep.trust import check_private, check_private_tree

    check_private(os.path.dirname(path), "Ray's state folder", follow=True)
    check_private_tree(path, "Ray's saved sweep state")


def make_tuner(
    cfg: Config, trainable, trials: dict[str, dict], base: dict, storage: str, name: str, progress
):
    """A Tuner restored from `storage/name` where Ray can restore it, else a new one; `trials`
    is a grid's trials by id (empty for a searcher), the ids its points name.

    Before a restore the saved state is checked to be the user's alone (`check_ray_state`):
    Ray unpickles it, so a file someone else could write there would run their code.
    """
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from ftsweep.sweep.progress import ProgressCallback

    path = os.path.join(storage, name)
    if os.path.lexists(path):
        check_ray_state(path)
    if tune.Tuner.can_restore(path):
        progress.note(f"resuming sweep state from {path}")
        return tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=False
        )
    if trials:
        trial_name = grid_trial_name
    else:
        base_cfg = validate(base)

        def trial_name(trial) -> str:
            return trial_of(trial.config, base_cfg).trial_id

    return tune.Tuner(
        trainable,
        param_space=grid_space(trials),
        tune_config=tune.TuneConfig(
            search_alg=_searcher(cfg),
            scheduler=_scheduler(cfg),
            num_samples=1 if trials else cfg.sweep.num_samples,
            max_concurrent_trials=cfg.sweep.max_concurrent_trials,
            # One worker process serves trial after trial: torch and transformers are
            # imported once, not once per trial.
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
            callbacks=[ProgressCallback(), JsonLoggerCallback()],
            verbose=0,  # the progress callback is the display
        ),
    )
