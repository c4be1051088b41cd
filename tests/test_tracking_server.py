"""Cluster mode: trials in separate processes log to an MLflow server over PostgreSQL.

Needs the PostgreSQL server binaries (Debian: apt-get install postgresql; CI installs them)
and psycopg, which MLflow's server uses to reach the database.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftsweep.ops.postgres import LocalPostgres, ServerError, postgres_bin_dir
from ftsweep.ops.server import start_tracking_server, stop_tracking_server
from ftsweep.ops.service import check_user_can_serve, service_user

pytestmark = pytest.mark.slow

SECRET = "s3cret-Pa55"  # sent as basic-auth in tracking.uri; MLflow's open server ignores it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_user_kwargs(folder: Path) -> dict:
    """Drop root where the service user can run this Python here; else keep root (a machine
    whose interpreter lives under /root)."""
    if os.geteuid() != 0:
        return {}
    try:
        check_user_can_serve(service_user(), [folder])
        return {}
    except ServerError:
        return {"allow_root": True}


@pytest.fixture(scope="module")
def postgres():
    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries not installed (Debian: apt-get install postgresql)")
    assert importlib.util.find_spec("psycopg"), (
        "psycopg is not installed: MLflow's server reaches PostgreSQL through it "
        "(pip install 'psycopg[binary]')"
    )
    state = Path(tempfile.mkdtemp(prefix="ftsweep-pg-"))  # under /tmp: the postgres user can enter
    pg = LocalPostgres(state, port=_free_port())
    try:
        yield pg.start()
    finally:
        pg.stop()
        shutil.rmtree(state, ignore_errors=True)


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    backend: str
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_with_secret(self) -> str:
        return f"http://alice:{SECRET}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = start_tracking_server(
            self.backend,
            self.root / "artifacts",
            port=self.port,
            workers=2,
            log_file=self.root / "server.log",
            **server_user_kwargs(self.root),
        )


@pytest.fixture(scope="module")
def server(postgres):
    root = Path(tempfile.mkdtemp(prefix="ftsweep-tracking-server-"))
    root.chmod(0o755)  # where root is dropped, the service user must be able to enter it
    handle = Server(_free_port(), None, postgres.uri, root)
    handle.start()
    try:
        yield handle
    finally:
        stop_tracking_server(handle.process)
        shutil.rmtree(root, ignore_errors=True)


def test_mlflows_role_owns_its_database_and_nothing_else(postgres):
    """MLflow logs in as an ordinary role: no superuser (which could read any file the cluster's
    owner can, and run programs as it), no CREATEDB or CREATEROLE; it owns the mlflow database."""
    import psycopg

    from ftsweep.ops.postgres import ADMIN_ROLE

    with postgres.admin_connection() as conn:
        role = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = %s",
            (postgres.user,),
        ).fetchone()
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            (postgres.database,),
        ).fetchone()
        (superusers,) = conn.execute(
            "SELECT array_agg(rolname::text) FROM pg_roles WHERE rolsuper"
        ).fetchone()
    assert role == (False, False, False, False, False)
    assert owner == (postgres.user,)
    assert postgres.user not in superusers and ADMIN_ROLE in superusers
    with (
        psycopg.connect(postgres.uri) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("CREATE ROLE intruder SUPERUSER")
    for name in ("password", "admin_password"):
        path = postgres.state_dir / name
        assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600


WORKER = """
import sys, time
from pathlib import Path

from ftsweep.config import compose
from ftsweep.tracking.record import TrialRun

uri, results, sweep, index, steps, pause = sys.argv[1:7]
index, steps, pause = int(index), int(steps), float(pause)
cfg = compose(["model=tiny-llama", f"results_dir={results}", f"sweep.name={sweep}",
               f"tracking.uri={uri}", f"train.seed={index}"])
Path(results, f"ready-{index}").touch()
while not Path(results, "go").exists():
    time.sleep(0.01)
run = TrialRun(cfg, f"trial-{index}", f"run {index}", sweep)
for step in range(1, steps + 1):
    run.log_metrics({k: index + step / 1000 for k in ("train_loss", "eval_loss", "grad_norm",
                                                      "tokens", "lr")}, step=step)
    Path(results, f"step-{index}").write_text(str(step))
    time.sleep(pause)
run.finish("FINISHED", "completed")
print("logged", index)
"""
KEYS = ("train_loss", "eval_loss", "grad_norm", "tokens", "lr")


def _start_workers(uri: str, results: Path, sweep: str, n: int, steps: int, pause: float):
    results.mkdir(parents=True)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                uri,
                str(results),
                sweep,
                str(i),
                str(steps),
                str(pause),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    deadline = time.monotonic() + 300
    while len(list(results.glob("ready-*"))) < n:
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            pytest.fail("a worker died or stalled while importing:\n" + procs[0].communicate()[0])
        time.sleep(0.05)
    (results / "go").touch()
    return procs


def _step(progress: Path) -> int:
    try:
        return int(progress.read_text())
    except (FileNotFoundError, ValueError):
        return 0


def _finish(procs, timeout_s: float = 600) -> list[str]:
    try:
        outputs = [p.communicate(timeout=timeout_s)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
    return outputs


def _check_runs(url: str, sweep: str, n: int, steps: int):
    from ftsweep.tracking.store import get_client

    client = get_client(url)
    experiments = [e for e in client.search_experiments() if e.name == sweep]
    assert len(experiments) == 1
    runs = client.search_runs([experiments[0].experiment_id])
    assert len(runs) == n
    for run in runs:
        assert run.info.status == "FINISHED"
        for key in KEYS:
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, steps + 1)), (key, run.info)
    return runs


def test_four_concurrent_trials_log_to_the_server_and_lose_nothing(server, tmp_path):
    from ftsweep.config import compose
    from ftsweep.tracking.record import run_params

    steps = 40
    procs = _start_workers(server.url_with_secret, tmp_path / "r", "cluster", 4, steps, 0.0)
    outputs = _finish(procs)
    runs = _check_runs(server.url, "cluster", 4, steps)
    expected = {k: str(v) for k, v in run_params(compose(["model=tiny-llama"])).items()}
    for run in runs:
        params, tags = run.data.params, run.data.tags
        assert {k: v for k, v in params.items() if k != "seed"} == {
            k: v for k, v in expected.items() if k != "seed"
        }
        # The password in tracking.uri is neither recorded nor printed.
        assert SECRET not in repr(params) + repr(tags)
    leaks = [line for out in outputs for line in out.splitlines() if SECRET in line]
    assert not leaks, leaks[:5]
    # Artifacts go to the server's destination, not to a folder on the worker.
    assert not (tmp_path / "r" / "mlartifacts").exists()


def test_server_killed_and_restarted_mid_logging_loses_and_doubles_nothing(server, tmp_path):
    steps = 120
    results = tmp_path / "r"
    procs = _start_workers(server.url, results, "chaos", 1, steps, 0.05)
    deadline = time.monotonic() + 300
    while _step(results / "step-0") < 20:
        assert procs[0].poll() is None and time.monotonic() < deadline, "the worker stalled"
        time.sleep(0.05)
    # A crash, not a polite stop: the server and its workers die mid-request.
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(30)
    at_kill = _step(results / "step-0")
    assert at_kill < steps, "the worker finished before the server went away"
    time.sleep(3)
    # While the server was away the worker waited (it may have written the step it had just
    # logged), then retried: after the restart every step is there exactly once.
    assert _step(results / "step-0") <= at_kill + 1
    server.start()
    (output,) = _finish(procs)
    assert "Traceback" not in output, output
    _check_runs(server.url, "chaos", 1, steps)
