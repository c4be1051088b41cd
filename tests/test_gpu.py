"""The GPU path on CUDA: every method through the real trial, memory per trial, NCCL, shared GPUs.

Marked `gpu` and skipped where CUDA is absent; `make gpu-check` runs them before its
measurements. Trials run in a child process pinned to one GPU, trial after trial, as a sweep's
worker runs them (Ray hands it one GPU): in a process that sees several, HF's Trainer spreads a
single-process trial over all of them (DataParallel), and DeepSpeed picks its accelerator once
per process (tests/conftest.py points this one at the CPU).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from typing import Literal, get_args, get_origin

import pytest
import torch

from ftsweep.config import ConfigError, compose
from ftsweep.methods import get_method, method_names
from ftsweep.tracking.record import METRICS, TAG_ERROR, TAG_STOP_REASON
from ftsweep.tracking.store import get_client, tracking_uri

CUDA = torch.cuda.is_available()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA, reason="needs a CUDA device (torch.cuda.is_available() is False)"),
]

# The tiny random model always; the real SmolLM2-135M where the plan says it fits.
TINY, REAL = "tiny-llama", "smollm2-135m"
MODELS = (TINY, REAL)
PRECISIONS = ("bf16", "fp16")
# ZeRO stages one process runs; stage 3 runs on a two-worker group below.
SINGLE_PROCESS_STAGES = (0, 2)
# Knobs that lay a trial out rather than vary its method: the layouts and the worker group
# here cover them (ZeRO-Offload is left to CPU tests: DeepSpeed builds its CPU Adam first).
LAYOUT_KNOBS = ("zero_stage", "offload", "num_workers")
# An optional number that is off by default, turned on (LoRA+'s B/A learning-rate ratio is
# one; 16 is the ratio the LoRA+ paper suggests).
OPTIONAL_NUMBER_ON = 16.0
# A GPU with no conf/hardware entry prices its trials as this one: the tests check the
# arithmetic of a GPU's price, not the price.
FALLBACK_HARDWARE = "a100-80gb"


def _layouts() -> dict[str, tuple[str, ...]]:
    """Every registered method; each single-process ZeRO stage of one that has stages."""
    layouts = {}
    for name in method_names():
        if "zero_stage" in get_method(name).knobs.model_fields:
            for stage in SINGLE_PROCESS_STAGES:
                layouts[f"{name}-zero{stage}"] = (f"method={name}", f"method.zero_stage={stage}")
        else:
            layouts[name] = (f"method={name}",)
    return layouts


def _variants() -> dict[str, tuple[str, ...]]:
    """Every registered method's variants, read from its knobs: each knob that has a default
    set alone to each other choice it has (a yes/no knob turned on, a knob of named choices to
    each other name, a text knob to each of the names its knobs class lists as `<knob>_choices`,
    an optional number to OPTIONAL_NUMBER_ON), on the method's default layout."""
    variants = {}
    for name in method_names():
        knobs = get_method(name).knobs
        for key, field in knobs.model_fields.items():
            if field.is_required() or key in LAYOUT_KNOBS:
                continue
            if field.annotation is bool:
                choices = [not field.default]
            elif get_origin(field.annotation) is Literal:
                choices = get_args(field.annotation)
            elif field.annotation is str:
                choices = list(getattr(knobs, f"{key}_choices", {}))
            elif field.default is None:
                choices = [OPTIONAL_NUMBER_ON]
            else:
                continue  # a number to tune, not a variant
            for value in choices:
                if value != field.default:
                    text = str(value).lower() if isinstance(value, bool) else str(value)
                    variants[f"{name}-{key}-{text}"] = (f"method={name}", f"method.{key}={text}")
    return variants


LAYOUTS = _layouts()
VARIANTS = _variants()


# --- the device ------------------------------------------------------------------------------


def _device_memory_gb() -> float:
    return torch.cuda.get_device_properties(0).total_memory / 1e9


def _gpu_hardware() -> str:
    """The conf/hardware entry of this GPU (bench.gpu's match by name), else the fallback."""
    from bench.gpu import guess_hardware

    name = torch.cuda.get_device_name(0)
    return guess_hardware(name, _device_memory_gb()) or FALLBACK_HARDWARE


def _gpu_precision() -> str:
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _skip_unless_this_gpus_precision(precision: str) -> None:
    if precision != _gpu_precision():
        pytest.skip(
            f"this GPU trains in {_gpu_precision()}; {precision} trials run on GPUs "
            + ("with bf16" if precision == "bf16" else "without bf16 (a T4)")
        )


def _too_large(cfg, trials: int = 1) -> str | None:
    """Why the plan says `trials` such trials do not fit this GPU's memory together, or None."""
    from ftsweep.planning.plan import estimate_trial

    need = trials * estimate_trial(cfg).est_peak_gb_per_gpu
    if need > _device_memory_gb():
        return (
            f"the plan puts {trials} x {cfg.model.name} {cfg.method.name} at {need:.1f} GB, "
            f"over this GPU's {_device_memory_gb():.1f} GB"
        )
    return None


def _skip_unless_it_fits(cfg, trials: int = 1) -> None:
    reason = _too_large(cfg, trials)
    if reason:
        pytest.skip(reason)


# --- trials in a child process ---------------------------------------------------------------

# Runs the trials named in argv[1] ({name: overrides}) one after another in one process, as a
# sweep's worker does (a failed trial is recorded and the next one runs), and writes where each
# general-text measurement ran (the losses forgetting is measured from, before training and
# after) to argv[2], by trial.
TRIALS_SCRIPT = """
import json, sys, traceback
import torch
import ftsweep.data.forgetting as forgetting
import ftsweep.trial.general_text as general_text
from ftsweep.config import compose
from ftsweep.trial.run import run_trial

trials = json.loads(sys.argv[1])
seen = {name: [] for name in trials}
current = None

def watched(measure):
    def window_losses(model, *args, **kwargs):
        seen[current].append({
            "device": next(model.parameters()).device.type,
            "autocast": str(torch.get_autocast_dtype("cuda"))
            if torch.is_autocast_enabled("cuda") else None,
        })
        return measure(model, *args, **kwargs)
    return window_losses

forgetting.window_losses = watched(forgetting.window_losses)
general_text.window_losses = watched(general_text.window_losses)
for current, overrides in trials.items():
    print(f"--- trial {current}", flush=True)
    try:
        run_trial(compose(overrides))
    except Exception:
        traceback.print_exc()
    with open(sys.argv[2], "w") as out:
        json.dump(seen, out)
"""


def _one_gpu_env() -> dict[str, str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
    return dict(os.environ, CUDA_VISIBLE_DEVICES=visible, DS_ACCELERATOR="cuda", FTSWEEP_DEBUG="1")


def _run_trials(trials: dict[str, list[str]], folder, timeout_s: int = 480) -> tuple[dict, str]:
    """Run the trials in one child process on one GPU: (where each one's general-text losses
    ran, by trial; the end of what the child printed)."""
    seen = folder / "window-losses.json"
    try:
        done = subprocess.run(
            [sys.executable, "-c", TRIALS_SCRIPT, json.dumps(trials), str(seen)],
            env=_one_gpu_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        output = f"exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-6000:]}"
    except subprocess.TimeoutExpired as exc:
        output = f"timed out after {timeout_s} s\n{str(exc.stdout or '')[-3000:]}"
    return (json.loads(seen.read_text()) if seen.exists() else {}), output


def _the_run(cfg, output: str = ""):
    """The one MLflow run of cfg's experiment; a trial that did not finish fails the test with
    its error and what its process printed."""
    client = get_client(tracking_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.sweep.name)
    if experiment is None:
        pytest.fail(f"nothing recorded in experiment {cfg.sweep.name!r}:\n{output}")
    (run,) = client.search_runs([experiment.experiment_id])
    if run.info.status != "FINISHED":
        pytest.fail(f"{run.info.status}: {run.data.tags.get(TAG_ERROR)}\n{output}")
    return client, run


def _gpu_cost(cfg, wall_time_s: float, devices: float = 1) -> float:
    # devices x hours x the price per device-hour
    return devices * wall_time_s / 3600 * cfg.hardware.price_per_device_hour


def _trial_overrides(name: str, extra: tuple[str, ...], model: str, precision: str) -> list[str]:
    return [
        *extra,
        f"model={model}",
        f"hardware={_gpu_hardware()}",
        f"train.precision={precision}",
        f"sweep.name=gpu-{name}-{model}-{precision}",
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every layout (and on the tiny model every variant) of one model and precision, run once
    in one child process for the tests that read them. Returns a function of (tiny_overrides,
    model, precision) giving (the results folder, where each trial's general-text losses ran,
    why a trial was not run, the end of what the child printed)."""
    done = {}

    def train(tiny_overrides: list[str], model: str, precision: str):
        if (model, precision) not in done:
            folder = tmp_path_factory.mktemp(f"{model}-{precision}")
            trials, not_run = {}, {}
            chosen = {**LAYOUTS, **(VARIANTS if model == TINY else {})}
            for name, extra in chosen.items():
                overrides = [
                    *tiny_overrides,
                    f"results_dir={folder}",
                    *_trial_overrides(name, extra, model, precision),
                ]
                try:
                    reason = _too_large(compose(overrides))
                except ConfigError as exc:  # a choice this version refuses on its own
                    reason = f"refused: {exc}"
                if reason:
                    not_run[name] = reason
                else:
                    trials[name] = overrides
            seen, output = _run_trials(trials, folder)
            done[(model, precision)] = folder, seen, not_run, output
        return done[(model, precision)]

    return train


def _check_trial(tiny_config, trained, tiny_overrides, name, extra, model, precision):
    """A trial of `name` trained on the GPU and recorded what every trial records."""
    _skip_unless_this_gpus_precision(precision)
    folder, _, not_run, output = trained(tiny_overrides, model, precision)
    if name in not_run:
        pytest.skip(not_run[name])
    cfg = tiny_config(*_trial_overrides(name, extra, model, precision), f"results_dir={folder}")
    client, run = _the_run(cfg, output)
    assert run.data.tags[TAG_STOP_REASON] == "completed"
    params, metrics = run.data.params, run.data.metrics
    assert (params["method"], params["model"]) == (cfg.method.name, model)
    assert params["precision"] == precision
    for key in METRICS:
        assert key in metrics and math.isfinite(metrics[key]), key
    assert 0.0 <= metrics["quality"] <= 1.0
    assert metrics["tokens_per_s"] > 0 and metrics["trainable_params"] > 0
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert losses and all(math.isfinite(loss) for loss in losses)
    # The peak is CUDA's allocator's: it held at least the weights (half a byte each in NF4,
    # the least any method keeps). A trial that trained on the CPU would show ~0 here.
    weights_gb = cfg.model.architecture.num_params * 0.5 / 1e9
    assert metrics["peak_mem_gb"] >= weights_gb, "the trial's memory was not on the GPU"
    assert metrics["cost_usd"] == pytest.approx(_gpu_cost(cfg, metrics["wall_time_s"]))
    return params


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_method_trains_through_the_trial_on_cuda(
    tiny_config, trained, tiny_overrides, layout, model, precision
):
    params = _check_trial(
        tiny_config, trained, tiny_overrides, layout, LAYOUTS[layout], model, precision
    )
    # the layout it ran is the one it records (method.zero_stage=2: zero_stage 2)
    for override in LAYOUTS[layout]:
        key, value = override.split("=", 1)
        if key.startswith("method."):
            assert params[key.removeprefix("method.")] == value


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_method_variant_trains_on_cuda(
    tiny_config, trained, tiny_overrides, variant, precision
):
    _check_trial(tiny_config, trained, tiny_overrides, variant, VARIANTS[variant], TINY, precision)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_general_text_losses_are_measured_on_the_gpu_before_training_and_after(
    trained, tiny_overrides, layout
):
    # Forgetting is after minus before on the same text: both must run on the GPU under the
    # autocast the model trains in, or the difference holds CPU-against-GPU numerics.
    from ftsweep.methods.loading import dtype_of

    precision = _gpu_precision()
    _, seen, _, output = trained(tiny_overrides, TINY, precision)
    measured = seen.get(layout, [])
    assert len(measured) >= 2, f"no measurement before training and after: {measured}\n{output}"
    expected = {"device": "cuda", "autocast": str(dtype_of(precision))}
    assert all(m == expected for m in measured), f"in order (first: before training): {measured}"


# --- the memory a trial records --------------------------------------------------------------


def test_each_trial_in_one_process_records_its_own_cuda_peak(tiny_overrides, tiny_config, tmp_path):
    # A small trial, a large one, the small one again (another learning rate: another trial
    # with the same shapes): the allocator's peak is reset at each trial's start, so the third
    # records the small trial's peak, not the large one's.
    common = [f"hardware={_gpu_hardware()}", f"train.precision={_gpu_precision()}"]
    small = ["method=lora", f"model={TINY}", *common]
    trials = {
        "first-small": [*small, "method.learning_rate=1e-3"],
        "large": ["method=full", "method.zero_stage=0", f"model={REAL}", *common],
        "second-small": [*small, "method.learning_rate=2e-3"],
    }
    trials = {name: [*extra, f"sweep.name={name}"] for name, extra in trials.items()}
    configs = {name: tiny_config(*extra) for name, extra in trials.items()}
    _skip_unless_it_fits(configs["large"])
    _, output = _run_trials(
        {name: [*tiny_overrides, *extra] for name, extra in trials.items()}, tmp_path
    )
    peak = {
        name: _the_run(cfg, output)[1].data.metrics["peak_mem_gb"] for name, cfg in configs.items()
    }
    assert peak["large"] > 2 * peak["first-small"], f"the large trial is not larger: {peak}"
    assert peak["second-small"] == pytest.approx(peak["first-small"], rel=0.1, abs=0.02), (
        f"the second small trial recorded what an earlier trial held or reached: {peak}"
    )


# --- a quantised base ------------------------------------------------------------------------


@pytest.mark.parametrize("method", [n for n in method_names() if get_method(n).quantized])
def test_a_quantised_base_loads_in_bitsandbytes_nf4_on_the_gpu_and_trains(tiny_config, method):
    import bitsandbytes as bnb

    from ftsweep.methods.loading import build_model, dtype_of
    from ftsweep.models.builtin import resolve_model_path

    precision = _gpu_precision()
    cfg = tiny_config(
        f"method={method}", f"hardware={_gpu_hardware()}", f"train.precision={precision}"
    )
    model = build_model(cfg, resolve_model_path(cfg.model.name_or_path))
    targets = tuple(cfg.method.target_names)
    adapted = [
        m for n, m in model.named_modules() if n.endswith(targets) and hasattr(m, "base_layer")
    ]
    assert adapted, f"no adapted {targets} modules"
    for module in adapted:
        base = module.base_layer
        assert isinstance(base, bnb.nn.Linear4bit), type(base)
        assert base.weight.device.type == "cuda"
        assert base.weight.quant_state.quant_type == "nf4"
        assert base.compute_dtype == dtype_of(precision)
    ids = torch.randint(0, cfg.model.architecture.vocab_size, (2, 32), device="cuda")
    with torch.autocast("cuda", dtype=dtype_of(precision)):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n, _ in trainable)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for _, p in trainable)


# --- Ray: a worker group, and trials sharing a GPU -------------------------------------------


@pytest.mark.skipif(
    CUDA and torch.cuda.device_count() < 2,
    reason=f"a two-worker NCCL group needs two GPUs (this machine has {torch.cuda.device_count()})",
)
def test_two_worker_zero3_group_trains_over_nccl(tiny_config, tmp_path, monkeypatch):
    import ray

    from ftsweep.trial.run import run_trial

    # Ray's workers inherit this (and ftsweep passes it on): DeepSpeed on the GPUs.
    monkeypatch.setenv("DS_ACCELERATOR", "cuda")
    cfg = tiny_config(
        "method=full",
        "method.zero_stage=3",
        "method.num_workers=2",
        f"hardware={_gpu_hardware()}",
        f"train.precision={_gpu_precision()}",
        "sweep.name=nccl",
    )
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_trial(cfg, trial_id="full-zero3-nccl", invocation_id="test")
    finally:
        ray.shutdown()
    assert (result.status, result.stop_reason) == ("FINISHED", "completed")
    _, run = _the_run(cfg)
    params, metrics = run.data.params, run.data.metrics
    assert params["zero_stage"] == "3" and params["num_workers"] == "2"
    assert metrics["devices"] == 2
    per_rank = [metrics["rank0_tokens_trained"], metrics["rank1_tokens_trained"]]
    assert all(tokens > 0 for tokens in per_rank)
    assert sum(per_rank) == metrics["tokens_trained"]
    # each rank's own CUDA peak: ZeRO-3 put a share of the model on each GPU
    assert metrics["rank0_peak_mem_gb"] > 0 and metrics["rank1_peak_mem_gb"] > 0
    assert metrics["cost_usd"] == pytest.approx(_gpu_cost(cfg, metrics["wall_time_s"], devices=2))


def test_two_lora_trials_share_one_gpu_each_priced_at_its_share(tiny_config, tmp_path):
    import ray
    from ray import tune

    from ftsweep.sweep.resources import trial_resources
    from ftsweep.trial.run import run_trial

    share = 0.5
    try:
        configs = [
            tiny_config(
                "method=lora",
                f"method.learning_rate={lr}",
                f"hardware={_gpu_hardware()}",
                f"hardware.devices_per_trial={share}",
                f"train.precision={_gpu_precision()}",
                "sweep.name=shared",
            )
            for lr in (1e-3, 2e-3)
        ]
    except ConfigError as exc:
        pytest.skip(f"no fractional GPU share per trial in this version: {exc}")
    _skip_unless_it_fits(configs[0], trials=2)

    def trainable(config):
        started = time.time()
        result = run_trial(configs[config["index"]], invocation_id="tune")
        tune.report(
            {
                **result.metrics,
                "stop_reason": result.stop_reason,
                "started": started,
                "ended": time.time(),
                "gpu": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            }
        )

    resources = trial_resources(configs[0], node_cpus=4)
    assert resources["gpu"] == share
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={"index": tune.grid_search([0, 1])},
            tune_config=tune.TuneConfig(max_concurrent_trials=2),
            run_config=tune.RunConfig(name="shared", storage_path=str(tmp_path / "ray"), verbose=0),
        )
        trials = list(tuner.fit())
    finally:
        ray.shutdown()
    assert all(t.error is None for t in trials), [t.error for t in trials]
    metrics = [t.metrics for t in trials]
    assert [m["stop_reason"] for m in metrics] == ["completed", "completed"]
    assert max(m["started"] for m in metrics) < min(m["ended"] for m in metrics), "not at once"
    assert metrics[0]["gpu"] == metrics[1]["gpu"] != "", "not on one GPU"
    for m in metrics:
        assert m["cost_usd"] == pytest.approx(_gpu_cost(configs[0], m["wall_time_s"], share))
