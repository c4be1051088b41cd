"""What each trial may use, and the Ray instance the sweep runs on."""

from __future__ import annotations

import os

from ftsweep.config import Config, validate


def trial_resources(cfg: Config, node_cpus: int) -> dict[str, float]:
    """One single-process trial's share: GPUs from the hardware group, CPUs split between
    concurrent trials."""
    concurrent = cfg.sweep.max_concurrent_trials
    if cfg.hardware.device == "cuda":
        # A GPU trial needs a few CPUs to feed its device, not the node's share.
        cpus = cfg.sweep.cpus_per_trial or 2
        return {"cpu": cpus, "gpu": cfg.hardware.devices_per_trial}
    cpus = cfg.sweep.cpus_per_trial or max(1, node_cpus // concurrent)
    return {"cpu": cpus}


def cpus_per_worker(cfg: Config) -> int:
    # A worker-group trial's CPUs (train.threads, set from the trial's share) split between workers.
    return max(1, (cfg.train.threads or 1) // cfg.method.group_size)


def resources_for(base: dict, single_process: dict[str, float]):
    """Per-trial resources: a trial that starts a Ray Train worker group reserves no CPU or GPU
    itself (its workers reserve their own; a CPU held here could starve them), others their share."""

    def resources(config: dict) -> dict[str, float]:
        from ftsweep.sweep.trainable import trial_of
        from ftsweep.trial.workers import DRIVER_RESOURCES

        cfg = trial_of(config, validate(base)).config
        return dict(DRIVER_RESOURCES) if cfg.method.group_size > 1 else dict(single_process)

    return resources


# A stopped trial's thread closes its MLflow run before a reused worker takes the next trial;
# Ray's default wait (2 s) can run out on a busy machine, and the worker is then killed mid-write.
WORKER_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "120"}
# Read by the raylet that ray.init starts on this machine (a cluster keeps its own setting).
WORKER_NICENESS = "RAY_worker_niceness"


def start_ray(cfg: Config) -> int:
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        env = {"runtime_env": {"env_vars": WORKER_ENV}}
        if address:
            ray.init(address=address, log_to_driver=False, **env)
        else:
            # Ray runs workers at nice 15 to keep its own daemons responsive; on a machine that
            # also runs anything else, that slows the trials and inflates the wall time and cost
            # they record. Trials are the point of the sweep: they run at normal priority.
            os.environ.setdefault(WORKER_NICENESS, "0")
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, **env)
    # A trial runs on one node: its CPU share is cut from the largest node, not the cluster sum.
    per_node = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return int(max(per_node, default=1))


def with_threads(cfg: Config, threads: int) -> dict:
    """The config as data, with the trial's CPU threads where the user set none."""
    data = cfg.model_dump()
    if cfg.hardware.device == "cpu" and not cfg.train.threads:
        data["train"]["threads"] = threads
    return data
