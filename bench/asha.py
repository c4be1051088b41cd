"""ASHA against the full grid on the same 16 configurations, both run for real by `run_sweep`.

- asha_compute_fraction: training tokens ASHA spent over the tokens the grid spent.
  Goal <= 0.40.
- asha_best_quality_gap: the grid's best quality minus the best quality among the trials ASHA
  let finish. Goal: within 0.02.

The configurations: LoRA on SmolLM2-135M, 8 learning rates x ranks 4 and 16 (alpha = 2 x rank),
on the domain task (support-ticket triage; the untrained model scores 0 and quality moves with
the learning rate within a few steps, so the best configuration means something). They are
given to both sweeps as one grid in a fixed shuffled order (seed 0: ASHA decides as trials
arrive, so a grid sorted by learning rate would favour or handicap it); the grid sweep runs them
with `sweep.scheduler=none`, the ASHA sweep with `sweep.scheduler=asha`, rungs in training
tokens. Both evaluate held-out loss after every step (`train.eval_every=1`: what ASHA's rungs
compare; the same evaluation cost on both sides, and no change to any token count). Evaluation
does not change training (no dropout, its own data loader), so a trial ASHA lets finish matches
the grid's run of the same configuration: the details count how many match.

The first rung comes after one step: `grace_period_tokens` = batch x the shortest example,
so every trial's first evaluation is past it; the second after `reduction_factor` steps; the
third would be past the end of training.

The grid's per-step losses answer what one ASHA run cannot: which grace period would have kept
the grid's best configuration, and at what compute (counted in steps). `grace_scan` replays
ASHA's rule (Ray's `_Bracket.on_result`, step by step, trials in the order the sweep started
them) over those losses for every grace period up to half of training at reduction factors 3
and 4; its replay of the measured setting is checked against the real ASHA sweep (details:
`replay_matches_asha`).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import compose, emit, log, read_result, run_process

SETTINGS = {
    "full": {
        "model": "smollm2-135m",
        "steps": 12,
        "batch": 4,
        "num_eval": 16,
        "max_new_tokens": 16,
        "reduction_factor": 4,
    },
    "quick": {
        "model": "tiny-llama",
        "steps": 8,
        "batch": 4,
        "num_eval": 4,
        "max_new_tokens": 8,
        "reduction_factor": 4,
    },
}
LEARNING_RATES = (2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3)
RANKS = (4, 16)
ORDER_SEED = 0


def space() -> list[dict]:
    """The 16 configurations, one grid point each, in a fixed shuffled order."""
    points = [(lr, r) for lr in LEARNING_RATES for r in RANKS]
    random.Random(ORDER_SEED).shuffle(points)
    return [
        {
            "method": "lora",
            "params": {"learning_rate": lr, "lora_r": r, "lora_alpha_ratio": 2},
        }
        for lr, r in points
    ]


def base_overrides(s: dict, results_dir: str) -> list[str]:
    return [
        f"model={s['model']}",
        "method=lora",
        "data=domain",
        "data.num_train=64",  # more than the 48 examples a trial sees; tokenising 512 costs more
        f"data.num_eval={s['num_eval']}",
        f"train.max_steps={s['steps']}",
        f"train.batch_size={s['batch']}",
        f"train.max_new_tokens={s['max_new_tokens']}",
        "train.log_every=4",
        f"results_dir={results_dir}",
    ]


def grace_tokens(cfg) -> int:
    """Tokens in the smallest possible first batch: every trial's first evaluation is past it."""
    from transformers import AutoTokenizer

    from ftsweep.data.tasks import get_task, three_way_split
    from ftsweep.data.tokenize import TokenizedDataset
    from ftsweep.models.builtin import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(cfg.model.name_or_path))
    train = three_way_split(get_task(cfg.data), cfg.data).train
    shortest = min(
        len(item["input_ids"])
        for item in TokenizedDataset(tokenizer, train, cfg.train.seq_len).items
    )
    return cfg.train.batch_size * shortest


def sweep_config(overrides: list[str], sweep: dict, train: dict):
    from ftsweep.config import validate

    data = compose(overrides).model_dump()
    data["sweep"] = data["sweep"] | sweep
    data["train"] = data["train"] | train
    return validate(data)


def eval_losses(cfg) -> dict[str, dict[int, float]]:
    """Each finished trial's held-out loss by step, from its MLflow run."""
    from ftsweep.sweep.run import finished_runs_by_trial
    from ftsweep.tracking.store import experiment_name, get_client, tracking_uri

    uri = tracking_uri(cfg)
    client = get_client(uri)
    return {
        trial_id: {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval_loss")}
        for trial_id, run in finished_runs_by_trial(uri, experiment_name(cfg)).items()
    }


def run_one(spec: dict) -> dict:
    """In this process: one sweep through `run_sweep`; what each trial reported last."""
    from ftsweep.sweep.run import run_sweep

    cfg = sweep_config(spec["overrides"], spec["sweep"], spec["train"])
    started = time.perf_counter()
    outcome = run_sweep(cfg)
    wall = time.perf_counter() - started
    losses = eval_losses(cfg)
    trials = {}
    for t in outcome.trials:
        m = t.config.method
        last = outcome.results.get(t.trial_id, {})
        trials[t.trial_id] = {
            "learning_rate": m.learning_rate,
            "lora_r": m.lora_r,
            "stop_reason": last.get("stop_reason", "early_stopped" if last else "missing"),
            # a finished trial reports tokens_trained; one ASHA stopped, the tokens at its last rung
            "tokens": last.get("tokens_trained", last.get("tokens")),
            "quality": last.get("quality"),
            "eval_loss": last.get("eval_loss"),
            "step": last.get("step"),
            # JSON keys are strings: steps as a list, index 0 = step 1
            "eval_loss_by_step": [v for _, v in sorted(losses.get(t.trial_id, {}).items())],
        }
    return {"wall_s": wall, "trials": trials, "errors": outcome.errors}


def replay_asha(losses: list[list[float]], grace_steps: int, reduction_factor: float) -> list[int]:
    """The step at which ASHA stops each trial (len(losses[i]) if it finishes), trials arriving
    one after another in the given order, rungs at grace x reduction_factor^k steps.

    Ray's rule (`ray.tune.schedulers.async_hyperband._Bracket.on_result`): at a rung, a trial
    stops if its loss is worse than the (1 - 1/reduction_factor) quantile of the losses already
    recorded there; its own loss is recorded either way; the first trial at a rung always goes on.
    """
    steps = len(losses[0])
    rungs = []
    milestone = float(grace_steps)
    while milestone < steps:
        rungs.append(math.ceil(milestone))
        milestone *= reduction_factor
    recorded: dict[int, list[float]] = {rung: [] for rung in rungs}
    stopped_at = []
    for trial in losses:
        stop = len(trial)
        for rung in rungs:
            reward = -trial[rung - 1]
            earlier = recorded[rung]
            cutoff = (
                np.nanpercentile(earlier, (1 - 1 / reduction_factor) * 100) if earlier else None
            )
            earlier.append(reward)
            if cutoff is not None and reward < cutoff:
                stop = rung
                break
        stopped_at.append(stop)
    return stopped_at


def grace_scan(trials: list[dict], reduction_factors=(3, 4)) -> list[dict]:
    """For each grace period (steps) and reduction factor: the grid's compute ASHA would spend
    and how far its best finished trial would fall short of the grid's best."""
    losses = [t["eval_loss_by_step"] for t in trials]
    steps = len(losses[0])
    best = max(t["quality"] for t in trials)
    rows = []
    for factor in reduction_factors:
        for grace in range(1, steps // 2 + 1):
            stopped_at = replay_asha(losses, grace, factor)
            finished = [
                t["quality"] for t, stop in zip(trials, stopped_at, strict=True) if stop == steps
            ]
            rows.append(
                {
                    "reduction_factor": factor,
                    "grace_steps": grace,
                    "compute_fraction": sum(stopped_at) / (steps * len(trials)),
                    "best_quality_gap": best - max(finished),
                    "finished": len(finished),
                }
            )
    return rows


def best_rank_by_step(trials: list[dict]) -> list[int]:
    """Where the grid's best configuration ranks (1 = lowest held-out loss) after each step."""
    best = max(trials, key=lambda t: t["quality"])
    steps = len(best["eval_loss_by_step"])
    return [
        1 + sum(t["eval_loss_by_step"][i] < best["eval_loss_by_step"][i] for t in trials)
        for i in range(steps)
    ]


def run(quick: bool = False) -> tuple[dict, dict]:
    s = SETTINGS["quick" if quick else "full"]
    work = Path(tempfile.mkdtemp(prefix="ftsweep-bench-asha-"))
    grace = grace_tokens(compose(base_overrides(s, str(work))))
    sweeps = {}
    try:
        for name, scheduler in (("grid", "none"), ("asha", "asha")):
            spec = {
                "overrides": base_overrides(s, str(work / name)),
                "sweep": {
                    "name": "bench_asha",
                    "algorithm": "grid",
                    "space": space(),
                    "scheduler": scheduler,
                    "asha": {
                        "grace_period_tokens": grace,
                        "reduction_factor": s["reduction_factor"],
                    },
                },
                "train": {"eval_every": 1},
            }
            log(f"asha: running the {name} sweep (16 trials)")
            _, stdout = run_process(["-m", "bench.asha", "sweep", json.dumps(spec)])
            sweeps[name] = read_result(stdout)
            log(f"asha: {name} sweep took {sweeps[name]['wall_s']:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    grid, asha = sweeps["grid"]["trials"], sweeps["asha"]["trials"]
    by_config = {(t["learning_rate"], t["lora_r"]): t for t in grid.values()}
    rows = []
    for t in asha.values():
        g = by_config[(t["learning_rate"], t["lora_r"])]
        rows.append(
            {
                "learning_rate": t["learning_rate"],
                "lora_r": t["lora_r"],
                "grid_quality": g["quality"],
                "grid_eval_loss": g["eval_loss"],
                "grid_tokens": g["tokens"],
                "asha_stop": t["stop_reason"],
                "asha_tokens": t["tokens"],
                "asha_quality": t["quality"],
                "asha_eval_loss": t["eval_loss"],
            }
        )
    grid_tokens = sum(r["grid_tokens"] or 0 for r in rows)
    asha_tokens = sum(r["asha_tokens"] or 0 for r in rows)
    finished = [r for r in rows if r["asha_quality"] is not None]
    grid_best = max(r["grid_quality"] for r in rows if r["grid_quality"] is not None)
    asha_best = max((r["asha_quality"] for r in finished), default=0.0)
    same = [
        r
        for r in finished
        if abs(r["asha_eval_loss"] - r["grid_eval_loss"]) < 1e-4
        and r["asha_quality"] == r["grid_quality"]
    ]
    # the grid's trials in the order both sweeps started them
    order = [(c["params"]["learning_rate"], c["params"]["lora_r"]) for c in space()]
    grid_in_order = [by_config[config] for config in order]
    scan = grace_scan(grid_in_order)
    measured_grace_steps = 1  # grace_tokens: one batch of the shortest examples
    replayed = replay_asha(
        [t["eval_loss_by_step"] for t in grid_in_order], measured_grace_steps, s["reduction_factor"]
    )
    asha_by_config = {(t["learning_rate"], t["lora_r"]): t for t in asha.values()}
    finished_for_real = [asha_by_config[c]["stop_reason"] == "completed" for c in order]
    figures = {
        "asha_compute_fraction": asha_tokens / grid_tokens,
        "asha_best_quality_gap": grid_best - asha_best,
    }
    details = {
        "model": s["model"],
        "task": "domain",
        "configurations": len(rows),
        "steps": s["steps"],
        "batch_size": s["batch"],
        "grace_period_tokens": grace,
        "reduction_factor": s["reduction_factor"],
        "grid_best_quality": grid_best,
        "asha_best_quality": asha_best,
        "asha_finished": len(finished),
        "asha_finished_matching_grid": len(same),
        "tokens": {"grid": grid_tokens, "asha": asha_tokens},
        "wall_s": {"grid": sweeps["grid"]["wall_s"], "asha": sweeps["asha"]["wall_s"]},
        "wall_fraction": sweeps["asha"]["wall_s"] / sweeps["grid"]["wall_s"],
        "errors": {k: v["errors"] for k, v in sweeps.items() if v["errors"]},
        "grid_best_rank_by_step": best_rank_by_step(grid_in_order),
        "replay_matches_asha": [stop == s["steps"] for stop in replayed] == finished_for_real,
        "grace_scan": scan,
        "trials": sorted(rows, key=lambda r: (r["learning_rate"], r["lora_r"])),
    }
    return figures, details


if __name__ == "__main__":
    if sys.argv[1:2] == ["sweep"]:
        emit(run_one(json.loads(sys.argv[2])))
