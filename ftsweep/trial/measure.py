"""What a trial measures besides quality: peak memory, trained tokens, and a group's numbers.

How a group's numbers are made from each rank's own (a single process is a group of one):

- `tokens_trained` is the sum of the tokens each rank trained on (padding excluded);
- `tokens_per_s` is that sum over the slowest rank's training time (ranks step together);
- `peak_mem_gb` is the largest rank's peak (per device: what must fit on one device);
- `wall_time_s` runs from just before the trial's processes were requested to rank 0's last
  measurement, so start-up is paid for; `cost_usd` prices what was rented
  (`ftsweep.planning.cost.trial_cost_usd`: GPUs per device, a CPU machine by its share).
"""

from __future__ import annotations

import threading

from ftsweep.config import Config
from ftsweep.tracking.record import TAG_PEAK_MEM_GB, TAG_PLAN_PEAK_GB

# What each rank measures of itself; the group's numbers are made from these.
RANK_KEYS = ("tokens_trained", "train_time_s", "peak_mem_gb")


class PeakMemory:
    """Samples the process's resident memory (and CUDA's allocator peak) while training runs.

    CUDA's peak is reset on entry: a worker process runs trial after trial, and an earlier
    trial's peak must not become this one's.
    """

    def __init__(self, interval_s: float = 0.2):
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak_bytes = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    @property
    def peak_gb(self) -> float:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 1e9
        return self.peak_bytes / 1e9


class TrainedTokens:
    """Counts the real (non-padding) tokens of the batches the model trained on.

    Counted where the model's training forward pass runs, so batches a data loader fetched
    ahead but never trained on, and evaluation batches, are not counted.
    """

    def __init__(self, model):
        self.tokens = 0
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if module.training and mask is not None:
            self.tokens += int(mask.sum())


def group_metrics(
    ranks: list[dict[str, float]], wall_time_s: float, cfg: Config
) -> dict[str, float]:
    """Throughput, memory and cost of a trial from each rank's own measurements.

    `ranks[r]` holds rank r's `tokens_trained`, `train_time_s` (saves included),
    `checkpoint_time_s` and `peak_mem_gb`. A group of
    more than one also records the group's size and each rank's own numbers.
    """
    from ftsweep.planning.cost import trial_cost_usd

    num_workers = len(ranks)
    # Each rank trains its own shard: 2 workers x 1,000 tokens = 2,000 tokens.
    tokens = sum(r["tokens_trained"] for r in ranks)
    # Ranks step in lockstep (gradients are reduced every step): the slowest sets the pace.
    train_time_s = max(r["train_time_s"] for r in ranks)
    # Saves happen inside the training time, every rank writing its part at once.
    checkpoint_time_s = max(r.get("checkpoint_time_s", 0.0) for r in ranks)
    training_s = train_time_s - checkpoint_time_s
    metrics = {
        "tokens_trained": tokens,
        "train_time_s": train_time_s,
        "checkpoint_time_s": checkpoint_time_s,
        # the speed of training itself: what the plan calibrates against
        "tokens_per_s": tokens / training_s if training_s > 0 else 0.0,
        # What has to fit on one device: the largest rank's peak.
        "peak_mem_gb": max(r["peak_mem_gb"] for r in ranks),
        "wall_time_s": wall_time_s,
        # what the trial rented for its wall time (planning.cost.trial_cost_usd)
        "cost_usd": trial_cost_usd(cfg, wall_time_s),
    }
    if num_workers > 1:
        devices = num_workers * cfg.hardware.devices_per_trial
        metrics |= {"num_workers": num_workers, "devices": devices}
        for rank, own in enumerate(ranks):
            metrics |= {f"rank{rank}_{key}": own[key] for key in RANK_KEYS}
    return metrics


def planned_peak_gb(cfg: Config) -> float | None:
    """The plan's estimate of this trial's peak memory per device, in GB (None without one)."""
    try:
        from ftsweep.planning.plan import estimate_trial

        option = estimate_trial(cfg)
    except Exception:  # an estimate that cannot be made must not hide the failure's record
        return None
    return option and option.est_peak_gb_per_gpu


def failure_peak_gb() -> float:
    """Peak memory when a trial fails: CUDA's allocator peak on a GPU, else the process's peak
    resident memory (the worker's lifetime peak: it may include an earlier trial)."""
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def oom_tags(cfg: Config) -> dict[str, str]:
    """Beside an out-of-memory failure: the plan's estimate and the peak measured at failure."""
    tags = {TAG_PEAK_MEM_GB: f"{failure_peak_gb():.3f}"}
    planned = planned_peak_gb(cfg)
    if planned is not None:
        tags[TAG_PLAN_PEAK_GB] = f"{planned:.3f}"
    return tags
