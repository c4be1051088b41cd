"""A trial's rough price before anything has run, for sizing `ftsweep auto`'s design.

Only the design reads it (how many blocks of trials the search stage can afford); every launch
is checked by the sweep's own budget gate (`ftsweep.sweep.budget`), from what finished runs
measured. It is the plan's training time (`ftsweep.planning.plan.estimate`, FLOPs per token at
the hardware's utilisation) for the trial's real tokens, plus what the plan leaves out and a
trial spends: loading, and generating every held-out reply.

    seconds = SETUP_S + training (the plan) + decode steps x (2 N x eval batch) / (peak x GENERATION_MFU)

It depends on the inputs alone (model, data, hardware, train settings), never on recorded runs,
so the same inputs always give the same design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ftsweep.auto.profile import DataProfile, decode_steps
from ftsweep.config import Config

# Generation reaches a small share of peak: one token per sequence per forward pass. Measured on
# the 2-core CPU with SmolLM2-135M at 64 replies a batch: 96 replies of up to 80 tokens in ~4 min
# (1.5 s a decode step, 0.064 of 180 GFLOP/s) and 512 short domain replies in 4.6 min (0.056).
# Not measured on a GPU: there a decode step is bound by memory as much as by compute.
GENERATION_MFU = 0.06
# Loading the model and the data and starting the trial's process, by device (rough).
SETUP_S = {"cpu": 10.0, "cuda": 30.0}


@dataclass(frozen=True)
class TrialEstimate:
    setup_s: float
    train_s: float
    eval_s: float
    price_per_s: float  # dollars a second the trial holds its devices for

    @property
    def seconds(self) -> float:
        return self.setup_s + self.train_s + self.eval_s

    @property
    def usd(self) -> float:
        return self.seconds * self.price_per_s

    def stopped_at(self, share: float) -> tuple[float, float]:
        """(seconds, dollars) of a trial ASHA stops after `share` of its training: no replies
        are generated for it."""
        seconds = self.setup_s + share * self.train_s
        return seconds, seconds * self.price_per_s


def _price_per_s(cfg: Config) -> float:
    from ftsweep.planning.cost import trial_cost_usd

    return trial_cost_usd(cfg, 3600.0) / 3600.0


def eval_seconds(cfg: Config, profile: DataProfile) -> float:
    """Generating the validation and test replies (see the module's formula)."""
    from ftsweep.planning.plan import share_of_device

    arch = cfg.model.architecture
    if arch is None:
        return 0.0
    hw = share_of_device(cfg.hardware)
    flops_per_step = 2 * arch.num_params * cfg.train.eval_batch_size
    return decode_steps(cfg, profile) * flops_per_step / (hw.peak_tflops * 1e12 * GENERATION_MFU)


def trial_estimate(cfg: Config, profile: DataProfile) -> TrialEstimate:
    """The trial `cfg` configures: its max_steps of its batch at the data's mean tokens."""
    from ftsweep.planning.plan import estimate, share_of_device
    from ftsweep.planning.settings import Workload, settings_for

    setup = SETUP_S[cfg.hardware.device]
    if cfg.model.architecture is None:
        return TrialEstimate(setup, 0.0, 0.0, _price_per_s(cfg))
    t = cfg.train
    workload = Workload(
        examples=t.max_steps * t.batch_size * t.grad_accum,
        tokens_per_example=max(1, math.ceil(profile.mean_tokens)),
        epochs=1,
    )
    m = cfg.method
    on_cpu = cfg.hardware.device == "cpu"
    option = estimate(
        settings_for(cfg, t.precision, workload),
        share_of_device(cfg.hardware),
        m.name,
        num_gpus=1 if on_cpu else m.group_size,
        zero_stage=getattr(m, "zero_stage", None),
        offload=getattr(m, "offload", False),
        processes_per_device=m.group_size if on_cpu else 1,
    )
    return TrialEstimate(
        setup, option.est_hours * 3600, eval_seconds(cfg, profile), _price_per_s(cfg)
    )


def baseline_estimate(cfg: Config, profile: DataProfile) -> TrialEstimate:
    """The untrained base model's run: loading and generating, no training."""
    return TrialEstimate(
        SETUP_S[cfg.hardware.device], 0.0, eval_seconds(cfg, profile), _price_per_s(cfg)
    )
