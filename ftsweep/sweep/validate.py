"""`ftsweep validate`: every trial a sweep would run, checked against the memory plan, with
its estimated peak memory and cost, without starting Ray or loading weights (as torchtune's
`tune validate` checks a config before a run)."""

from __future__ import annotations

import itertools

from ftsweep.config import Config, ConfigError, validate
from ftsweep.planning.checkpointing import checkpoint_every_steps
from ftsweep.planning.cost import run_cost_usd
from ftsweep.planning.plan import check_fits, estimate_trial
from ftsweep.sweep.run import check_sweep
from ftsweep.sweep.space import SEP, spec_from_sample


def validate_sweep(cfg: Config) -> None:
    """Print every trial the sweep would run with the plan's verdict; raise a ConfigError
    when a trial cannot fit (unless sweep.force=true)."""
    # The sweep's own pre-flight, every trial listed; the plan's verdict is given below.
    specs = check_sweep(_forced(cfg))
    sweep, hw = cfg.sweep, cfg.hardware
    print(
        f"sweep {sweep.name}: {sweep.algorithm} on model={cfg.model.name} data={cfg.data.name} "
        f"hardware={hw.name} ({hw.memory_gb:g} GB per device)"
    )
    if sweep.algorithm == "grid":
        rows = [_trial_row(spec.config, spec.trial_id, spec.run_name) for spec in specs]
        _print_rows(rows, ["trial", "method", "knobs"])
        what = f"{len(rows)} trial{'s' * (len(rows) != 1)}"
    else:
        print(
            f"{sweep.num_samples} trials drawn at run time by {sweep.algorithm} from "
            f"{len(sweep.space)} sub-space{'s' * (len(sweep.space) != 1)}:"
        )
        rows = []
        for sub in sweep.space:
            print(f"  {sub.method}: {_describe_params(sub.params)}")
            rows += [_trial_row(c, sub.method, name) for c, name in _subspace_corners(cfg, sub)]
        print("the plan at each sub-space's choices and range ends:")
        _print_rows(rows, ["sub-space", "method", "knobs"])
        what = f"{sweep.num_samples} trials (at most {_money(_max_cost(rows))} each)"
    unfit = [row for row in rows if row["reason"]]
    costs = [row["cost"] for row in rows]
    total = sum(c for c in costs if c is not None) if sweep.algorithm == "grid" else None
    peaks = [row["peak"] for row in rows if row["peak"] is not None]
    print(
        f"total: {what}"
        + (f", est {_money(total)}" if total is not None else "")
        + (" (+? where the model has no architecture numbers)" if None in costs else "")
        + (f", peak {max(peaks):.2f} GB per device" if peaks else "")
        + f"; {len(unfit)} cannot fit"
        + (" (launched anyway: sweep.force=true)" if unfit and sweep.force else "")
    )
    if unfit and not sweep.force:
        first = unfit[0]
        raise ConfigError(
            f"{len(unfit)} of {len(rows)} {'trials' if sweep.algorithm == 'grid' else 'points'} "
            f"cannot fit; {first['knobs']}: {first['reason']}"
        )


def _forced(cfg):
    """The config with sweep.force=true: the pre-flight then lists trials the plan refuses."""
    raw = cfg.model_dump()
    return validate(raw | {"sweep": raw["sweep"] | {"force": True}})


def _trial_row(cfg, trial: str, knobs: str) -> dict:
    """One trial's plan: peak memory per device and dollars for its tokens (None: unknown)."""
    option = estimate_trial(cfg)
    row = {"trial": trial, "method": cfg.method.name, "knobs": knobs, "peak": None, "cost": None}
    row["reason"] = check_fits(cfg)
    every = checkpoint_every_steps(cfg)  # train.checkpoint_every, `auto` resolved
    row["saves"] = f"every {every} steps" if every else "none"
    if option is not None:
        t = cfg.train
        tokens = t.max_steps * t.batch_size * t.grad_accum * t.seq_len
        row["peak"] = option.est_peak_gb_per_gpu
        # its steps, and the one-off work its variant does at load (PiSSA's SVD)
        seconds = tokens / option.est_tokens_per_s + option.est_setup_s
        row["cost"] = run_cost_usd(seconds, cfg.hardware)
    return row


def _max_cost(rows: list[dict]) -> float | None:
    costs = [row["cost"] for row in rows if row["cost"] is not None]
    return max(costs) if costs else None


def _money(value: float | None) -> str:
    if value is None:
        return "$?"
    return f"${value:.6f}" if value < 1 else f"${value:,.2f}"


def _print_rows(rows: list[dict], names: list[str]) -> None:
    cells = [
        [
            row["trial"],
            row["method"],
            row["knobs"],
            "?" if row["peak"] is None else f"{row['peak']:.2f}",
            "?" if row["cost"] is None else _money(row["cost"]),
            row["saves"],
            ("CANNOT FIT" if row["reason"] else "ok"),
        ]
        for row in rows
    ]
    header = [*names, "peak GB/device", "est cost USD", "checkpoints", "plan"]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *cells, strict=False)]
    for line in [header, *cells]:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _describe_params(params: dict) -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, dict):
            scale = ", log" if value.get("log") else ""
            parts.append(f"{key} in [{value.get('low')}, {value.get('high')}{scale}]")
        elif isinstance(value, list):
            parts.append(f"{key} in {{{', '.join(map(str, value))}}}")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts) or "(the method's defaults)"


MAX_CORNERS = 64  # sub-space points the plan is asked about, per sub-space


def _subspace_corners(cfg, sub) -> list[tuple]:
    """(config, run name) at every choice of a sub-space's lists and both ends of its ranges:
    what a drawn trial's memory and cost lie between."""
    axes = []
    for key, value in sub.params.items():
        if isinstance(value, dict):
            axes.append([(key, value["low"]), (key, value["high"])])
        elif isinstance(value, list):
            axes.append([(key, v) for v in value])
        else:
            axes.append([(key, value)])
    corners = []
    for point in itertools.islice(itertools.product(*axes), MAX_CORNERS):
        sample = {"method": sub.method} | {f"{sub.method}{SEP}{k}": v for k, v in point}
        spec = spec_from_sample(cfg, sample)
        corners.append((spec.config, spec.run_name))
    return corners
