"""What the figures share: configs, a stand-in for the MLflow run, timing, worker processes.

Every figure is a ratio of two things measured side by side in the same run: the two sides
alternate (A B A B ...) and the figure is the median of the ratios of adjacent pairs, so a
machine that gets busier or quieter during the run moves both sides of each pair alike.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT_MARK = "BENCH_RESULT "  # workers print their result on one line after this mark


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_threads() -> int:
    return os.cpu_count() or 1


def compose(overrides: Sequence[str]):
    """The project's own composition of conf/ with Hydra overrides."""
    from ftsweep.config import compose as ftsweep_compose

    return ftsweep_compose(list(overrides))


def with_train(cfg, **changes):
    """A copy of a config with train.* keys replaced (validated again)."""
    from ftsweep.config import validate

    data = cfg.model_dump()
    data["train"] = data["train"] | changes
    return validate(data)


class NoRecord:
    """Stands in for a trial's MLflow run where the bare side must record nothing."""

    trial_id = "bench-bare"  # names the trial's checkpoint folder

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifacts(self, local_dir, artifact_path: str) -> None:
        pass

    def set_tag(self, key: str, value: str) -> None:
        pass


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def pair_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Ratios of the pairs measured next to each other in time."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def alternate(sides: dict[str, Callable[[], float]], reps: int, label: str) -> dict[str, list]:
    """Runs each side `reps` times, alternating; the order within a round rotates each round."""
    names = list(sides)
    out: dict[str, list] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            value = sides[name]()
            out[name].append(value)
            shown = f"{value:.4g}" if isinstance(value, int | float) else "done"
            log(f"{label}: {name} {rep + 1}/{reps}: {shown}")
    return out


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed probes for accelerators otherwise
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_process(args: Sequence[str], timeout_s: float = 3600) -> tuple[float, str]:
    """Runs `python ARGS` (or the command given) from the project root; returns (wall s, stdout).

    The wall time runs from just before the process starts to its exit: interpreter start-up
    and imports included, as a user waits for them.
    """
    command = list(args) if args[0].startswith("/") else [sys.executable, *args]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {done.returncode}:\n{tail}")
    return wall, done.stdout


def emit(result: dict) -> None:
    """A worker's result, for `read_result`."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def read_result(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise RuntimeError("the worker printed no result")


def peak_rss_gb() -> float:
    """The kernel's high-water mark of this process's resident memory (VmHWM), in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9  # kB (KiB)
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def environment() -> dict:
    """What the numbers were measured on."""
    import platform

    versions = {}
    for name in ("torch", "transformers", "peft", "ray", "mlflow", "bitsandbytes", "deepspeed"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # a missing or broken optional package is reported, not fatal
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": cpu_threads(),
        "git_commit": commit or None,
        **versions,
    }
