"""`make bench`: measure every figure, print the table, write RESULTS/bench.json.

    python -m bench.run [results_dir=DIR | --results DIR] [--quick] [figures=a,b | --figures a,b]

Figures (groups): steps (lora_vs_full_step_time, qlora_vs_lora_step_time, flop_utilisation),
throughput (trainer_vs_bare_throughput), memory (memory_estimate_error), overhead
(sweep_overhead_ratio), asha (asha_compute_fraction, asha_best_quality_gap), trial_overhead
(per_trial_overhead_s), store_scale (report_s_10k_runs), auto (auto_compute_fraction,
auto_same_decision). `--quick` runs
each with fewer repetitions and steps (and the ASHA comparison on the tiny random model): a check
that everything runs, in minutes; its numbers are noisier. A run of some groups keeps the other
groups' last results in bench.json.
"""

from __future__ import annotations

import os

# With more OpenMP threads than free cores (a shared machine), spinning threads wait on each
# other at every barrier: a SmolLM2 LoRA step measured 8-53 s instead of ~4 s. Passive waiting
# keeps steps steady; it is set before torch loads, here and in every worker process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

if not __package__:  # run as `python bench/run.py`: the project root holds the bench package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GROUPS = {
    "steps": ("lora_vs_full_step_time", "qlora_vs_lora_step_time", "flop_utilisation"),
    "throughput": ("trainer_vs_bare_throughput",),
    "memory": ("memory_estimate_error", "memory_estimate_error_calibrated"),
    "overhead": ("sweep_overhead_ratio",),
    "asha": ("asha_compute_fraction", "asha_best_quality_gap"),
    "trial_overhead": ("per_trial_overhead_s",),
    "store_scale": ("report_s_10k_runs",),
    "auto": ("auto_compute_fraction", "auto_same_decision"),
}
ALIASES = {"flops": "steps", "step_time": "steps"}
# (comparison, goal); None: reported without a goal
GOALS = {
    "sweep_overhead_ratio": ("<=", 1.10),
    "trainer_vs_bare_throughput": (">=", 0.95),
    "lora_vs_full_step_time": ("<=", 0.80),
    "qlora_vs_lora_step_time": None,
    "asha_compute_fraction": ("<=", 0.40),
    "asha_best_quality_gap": ("<=", 0.02),
    "memory_estimate_error": ("<=", 0.15),
    "memory_estimate_error_calibrated": None,
    "flop_utilisation": None,
    "per_trial_overhead_s": None,
    "report_s_10k_runs": None,
    "auto_compute_fraction": ("<=", 0.35),
    "auto_same_decision": (">=", 1.0),  # 1.0: the same decision as the grid's, 0.0: not
}
MEANING = {
    "sweep_overhead_ratio": "N short LoRA trials: `ftsweep sweep` wall / bare loop wall",
    "trainer_vs_bare_throughput": "trial's HF Trainer tokens/s / hand-written loop tokens/s",
    "lora_vs_full_step_time": "LoRA step / full fine-tuning step, same batch",
    "qlora_vs_lora_step_time": "QLoRA step / LoRA step, same batch",
    "asha_compute_fraction": "ASHA training tokens / full grid's, same 16 configs",
    "asha_best_quality_gap": "grid's best quality - ASHA's best",
    "memory_estimate_error": "worst |plan - measured peak| / measured (full, LoRA x 2 batches)",
    "memory_estimate_error_calibrated": "the same, each estimate calibrated by its method's other batch",
    "flop_utilisation": "full fine-tuning FLOP/s / fp32 matmul peak, same run",
    "per_trial_overhead_s": "(span of 200 one-step trials' runs - their own wall) / 200, seconds",
    "report_s_10k_runs": "report + summary + resume over a store of 10,000 runs, seconds",
    "auto_compute_fraction": "`ftsweep auto` training tokens / the full grid's, its own >= 16 configs",
    "auto_same_decision": "1 if auto's pick is not separated from the grid's best (paired interval)",
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--results", help="folder for bench.json (default: results)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and steps")
    parser.add_argument(
        "--figures", help=f"comma-separated groups: {', '.join(GROUPS)} (default: all)"
    )
    parser.add_argument(
        "settings", nargs="*", help="Hydra-style: results_dir=DIR figures=a,b quick=true"
    )
    args = parser.parse_args(argv)
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or key not in ("results_dir", "figures", "quick"):
            parser.error(f"{item}: expected results_dir=DIR, figures=a,b or quick=true")
        if key == "results_dir":
            args.results = args.results or value
        elif key == "figures":
            args.figures = value
        else:
            args.quick = args.quick or value.lower() in ("1", "true", "yes")
    args.results = Path(args.results or "results")
    names = [ALIASES.get(n, n) for n in (args.figures or ",".join(GROUPS)).split(",") if n]
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        parser.error(f"figures={','.join(unknown)}: no such group (allowed: {', '.join(GROUPS)})")
    args.groups = list(dict.fromkeys(names))
    return args


def met(name: str, value: float | None) -> bool | None:
    goal = GOALS.get(name)
    if goal is None or value is None:
        return None
    op, target = goal
    return value <= target if op == "<=" else value >= target


def measure(group: str, quick: bool) -> tuple[dict, dict]:
    from importlib import import_module

    from bench.common import load_average

    module = import_module(f"bench.{group}")
    before = load_average()
    started = time.perf_counter()
    figures, details = module.run(quick=quick)
    details = {
        "quick": quick,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_before": before,
        "load_average_after": load_average(),
        **details,
    }
    return figures, details


def table(results: dict) -> str:
    rows = [("figure", "value", "goal", "met", "meaning")]
    for name in GOALS:
        value = results.get(name)
        goal = GOALS[name]
        ok = met(name, value)
        rows.append(
            (
                name,
                "-" if value is None else f"{value:.3f}",
                "-" if goal is None else f"{goal[0]} {goal[1]:.2f}",
                "-" if ok is None else ("yes" if ok else "NO"),
                MEANING[name],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    from bench.common import environment, log

    path = args.results / "bench.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    results = {k: previous.get(k) for k in GOALS if previous.get(k) is not None}
    details = dict(previous.get("details", {}))
    failed = []
    env = environment()

    def write() -> None:  # after every group, so an interrupted run keeps what it measured
        out = {
            **{k: results.get(k) for k in GOALS},
            "goals": {k: (None if g is None else f"{g[0]} {g[1]}") for k, g in GOALS.items()},
            "met": {k: met(k, results.get(k)) for k in GOALS},
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "environment": env,
            "details": details,
        }
        args.results.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n")

    for group in args.groups:
        log(f"{group}: measuring{' (quick)' if args.quick else ''}")
        try:
            figures, found = measure(group, args.quick)
        except Exception as exc:  # one broken figure must not cost the others
            log(f"{group}: failed: {type(exc).__name__}: {exc}")
            failed.append(group)
            for name in GROUPS[group]:
                results.pop(name, None)
            details[group] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        else:
            results.update(figures)
            details[group] = found
            shown = (
                f"{k}={'not measured' if v is None else f'{v:.3f}'}" for k, v in figures.items()
            )
            log(f"{group}: {', '.join(shown)}")
        write()
    print(table(results))
    print(f"written: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
