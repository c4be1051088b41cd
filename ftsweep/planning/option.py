"""One way to run, estimated: a `PlanOption` (what plan.json holds), and the cheapest of each
method. The estimate (`plan`), the calibration (`fit`) and the table (`table`) all share it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ftsweep.methods import get_method
from ftsweep.planning.cost import experiments_per_dollar


@dataclass(frozen=True)
class PlanOption:
    """One way to run: a method on a GPU layout, with its estimates. plan.json holds these."""

    method: str
    gpu: str
    num_gpus: int
    zero_stage: int | None
    offload: bool
    est_peak_gb_per_gpu: float
    memory_gb: float
    fits: bool
    est_hours: float
    est_cost_usd: float
    experiments_per_dollar: float | None
    est_tokens_per_s: float
    est_host_gb: float
    model: str
    precision: str
    batch_size: int
    seq_len: int
    workload_tokens: int
    lora_r: int | None = None
    target_modules: str | None = None
    optimizer: str | None = None  # method.optimizer of a method that has one (full fine-tuning)
    est_setup_s: float = 0.0  # one-off seconds before the first step (PiSSA's SVD), in est_hours
    breakdown_gb: dict[str, float] = field(default_factory=dict)
    grads_persist: bool = True  # see memory.Memory: False means grads and activations overlap
    processes: int = 1  # Ray Train workers sharing one CPU machine's memory
    cheapest: bool = False  # the cheapest option that fits, for its method
    calibrated: str = ""  # how measured runs changed the estimate, if they did

    @property
    def layout(self) -> str:
        return get_method(self.method).layout_label(
            self.zero_stage, self.offload, self.optimizer or "adamw"
        )


def runs_per_dollar(cost: float) -> float | None:
    """Experiments per dollar; None for a run that costs nothing (plan.json holds no infinity)."""
    value = experiments_per_dollar(cost)
    return value if value != float("inf") else None


def cost_key(o: PlanOption) -> tuple:
    # cheaper first; on a tie fewer GPUs, then less memory
    return (o.est_cost_usd, o.num_gpus, o.est_peak_gb_per_gpu)


def mark_cheapest(options: list[PlanOption]) -> list[PlanOption]:
    """Flag, per method, the cheapest option that fits (fewer GPUs, then less memory, on a tie)."""
    best: dict[str, PlanOption] = {}
    for o in options:
        if o.fits and (o.method not in best or cost_key(o) < cost_key(best[o.method])):
            best[o.method] = o
    chosen = {id(o) for o in best.values()}
    return [replace(o, cheapest=id(o) in chosen) for o in options]
