"""What each trial may use, and the Ray instance the sweep runs on."""

from __future__ import annotations

import os
from pathlib import Path

from ftsweep.config import Config


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


# A stopped trial's thread closes its MLflow run before a reused worker takes the next trial;
# Ray's default wait (2 s) can run out on a busy machine, and the worker is then killed mid-write.
WORKER_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "120"}
# Read by the raylet that ray.init starts on this machine (a cluster keeps its own setting).
WORKER_NICENESS = "RAY_worker_niceness"


def private_ray_token() -> Path | None:
    """Ray's token file for a local instance, made (or kept) mode 0600 before ray.init.

    Ray 2.60 turns token authentication on for a new local instance and, without a token,
    writes ~/.ray/auth_token with the process umask (0644: any user may read it and run code
    on the instance). ftsweep makes that file itself first, 0600 in a 0700 folder, and narrows
    an existing one it owns. Nothing is done where the user chose: RAY_AUTH_MODE set,
    RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH given. Returns the file it looked after, if any.
    """
    if os.environ.get("RAY_AUTH_MODE") or {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(
        os.environ
    ):
        return None
    import secrets
    import stat

    path = Path.home() / ".ray" / "auth_token"
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except FileNotFoundError:
        tmp = path.with_name(f".auth_token-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))  # Ray's own format: 256 random bits, hex
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        st = os.lstat(path)
    except OSError:
        return None  # no home to write to: Ray's own behaviour
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
        os.chmod(path, 0o600)
    return path


def start_ray(cfg: Config) -> int:
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        # Only ftsweep's own settings travel in runtime_env: Ray stores it (GCS, the dashboard)
        # and puts it on worker command lines. Credentials reach a local instance's workers by
        # inheritance from this process's environment (ftsweep.config.inputs.move_credentials);
        # on a cluster they must be in the environment of `ray start` (docs/cluster.md).
        env = {"runtime_env": {"env_vars": WORKER_ENV}}
        if address:
            # A cluster, on purpose: `auto` is the one `ray start` last recorded on this machine,
            # or HOST:PORT / ray://HOST:10001. Its nodes bring their own resources.
            ray.init(address=address, log_to_driver=False, **env)
        else:
            private_ray_token()
            # Ray runs workers at nice 15 to keep its own daemons responsive; on a machine that
            # also runs anything else, that slows the trials and inflates the wall time and cost
            # they record. Trials are the point of the sweep: they run at normal priority.
            os.environ.setdefault(WORKER_NICENESS, "0")
            # "local": a fresh instance of our own. Without an address ray.init would join any
            # cluster someone started here (found through /tmp/ray/ray_current_cluster) and then
            # refuse num_cpus.
            ray.init(
                address="local",
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                **env,
            )
    # A trial runs on one node: its CPU share is cut from the largest node, not the cluster sum.
    per_node = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return int(max(per_node, default=1))


def with_threads(cfg: Config, threads: int) -> dict:
    """The config as data, with the trial's CPU threads where the user set none."""
    data = cfg.model_dump()
    if cfg.hardware.device == "cpu" and not cfg.train.threads:
        data["train"]["threads"] = threads
    return data
