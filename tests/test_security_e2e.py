"""End to end, against a real MLflow server on loopback with MLflow's basic-auth app (SQLite
backend, so no PostgreSQL is needed):

- the server accepts only its own Host headers (a DNS-rebinding name or a private address is
  refused even with valid credentials) and only authenticated requests;
- a smoke sweep whose `tracking.uri` carries the admin's password (`http://admin:SECRET@...`)
  trains and records every trial (so the credentials reached Ray's workers), and the secret is
  found nowhere it wrote: the results folder (Ray's state included), Ray's session folder of
  that run, the server's store, artifacts and log, the report, and every line printed.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ftsweep.ops.postgres import ServerError
from ftsweep.ops.server import start_tracking_server, stop_tracking_server
from ftsweep.ops.service import check_user_can_serve, service_user

pytestmark = pytest.mark.slow

ADMIN = "admin"
SECRET = "pl4nted-S3cret-q7v2k9"  # the admin's password, planted in tracking.uri
CREDENTIAL_ENV = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_user_kwargs(folder: Path) -> dict:
    """Drop root where the service user can run this Python here; else keep root (a machine
    whose interpreter lives under /root, as this one's)."""
    if os.geteuid() != 0:
        return {}
    try:
        check_user_can_serve(service_user(), [folder])
        return {}
    except ServerError:
        return {"allow_root": True}


class AuthServer:
    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.process = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"] = SECRET  # the first start makes the admin
        try:
            self.process = start_tracking_server(
                f"sqlite:///{self.root / 'mlflow.db'}",
                self.root / "artifacts",
                port=self.port,
                workers=1,
                auth_dir=self.root / "auth",
                log_file=self.root / "server.log",
                **server_user_kwargs(self.root),
            )
        finally:
            del os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"]

    def status(self, path: str, host: str | None = None, auth: bool = True) -> int:
        headers = {"Host": host or self.host}
        if auth:
            token = base64.b64encode(f"{ADMIN}:{SECRET}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=headers)
            return conn.getresponse().status
        finally:
            conn.close()


@pytest.fixture(scope="module")
def auth_server():
    root = Path(tempfile.mkdtemp(prefix="ftsweep-auth-server-"))
    root.chmod(0o755)  # a service user (root dropped) must be able to enter it
    server = AuthServer(root)
    server.start()
    try:
        yield server
    finally:
        stop_tracking_server(server.process)
        shutil.rmtree(root, ignore_errors=True)


SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def test_the_server_refuses_a_foreign_host_header_and_anonymous_requests(auth_server):
    assert auth_server.status(SEARCH) == 200
    assert auth_server.status(SEARCH, host=f"localhost:{auth_server.port}") == 200
    # DNS rebinding: a name the attacker controls resolving to this server. MLflow's own
    # default list (`10.*`, private ranges) would have let both through.
    assert auth_server.status(SEARCH, host="10.evil.example") == 403
    assert auth_server.status(SEARCH, host=f"10.0.0.5:{auth_server.port}") == 403
    assert auth_server.status(SEARCH, auth=False) == 401


def _ray_sessions_since(started: float) -> list[Path]:
    root = Path(tempfile.gettempdir()) / "ray"
    if not root.is_dir():
        return []
    return [
        p
        for p in root.glob("session_2*")
        if p.is_dir() and not p.is_symlink() and p.stat().st_mtime >= started - 1
    ]


def _files_holding(needles: list[bytes], roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_symlink() or not path.is_file():
                continue  # sockets, fifos, links (their targets are searched where they live)
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found += [f"{path}: {n.decode()}" for n in needles if n in data]
    return found


def test_a_secret_planted_in_tracking_uri_is_found_nowhere_a_sweep_writes(auth_server, tmp_path):
    from mlflow import MlflowClient

    results = tmp_path / "results"
    uri = f"http://{ADMIN}:{SECRET}@{auth_server.host}"
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV}
    env.pop("RAY_ADDRESS", None)
    started = time.time()
    outputs = []
    for command in (
        ["sweep", "sweep=smoke", f"results_dir={results}", f"tracking.uri={uri}"],
        ["report", "sweep=smoke", f"results_dir={results}", f"tracking.uri={uri}"],
        ["adapters", "sweep=smoke", f"results_dir={results}", f"tracking.uri={uri}"],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "ftsweep.cli", *command],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        outputs += [out.stdout, out.stderr]
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep_out = outputs[0]
    assert "best run per method (3/3 trials finished)" in sweep_out
    assert "tracking.uri carried credentials" in outputs[1]  # the one warning, redacted

    # Every trial reached the server through the workers' inherited credentials.
    os.environ.update(MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=SECRET)
    try:
        client = MlflowClient(f"http://{auth_server.host}")
        experiment = client.get_experiment_by_name("smoke")
        runs = client.search_runs([experiment.experiment_id])
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    assert sorted(r.data.params["method"] for r in runs) == ["full", "lora", "none", "qlora"]
    assert all(r.info.status == "FINISHED" for r in runs)
    report = results / "smoke" / "report.md"
    assert report.is_file()

    sessions = _ray_sessions_since(started)
    assert sessions, "the sweep's Ray session folder was not found under /tmp/ray"
    assert (results / "ray").is_dir()
    basic = base64.b64encode(f"{ADMIN}:{SECRET}".encode())  # an Authorization header, logged
    needles = [SECRET.encode(), basic]
    leaks = _files_holding(needles, [results, auth_server.root, *sessions])
    leaks += [f"output: {line}" for text in outputs for line in text.splitlines() if SECRET in line]
    assert not leaks, "\n".join(leaks[:20])
    # The search itself finds what it looks for: the sweep's name is in Ray's state and the
    # server's store.
    assert _files_holding([b"smoke"], [results / "ray"])
    assert _files_holding([b"smoke"], [auth_server.root])
