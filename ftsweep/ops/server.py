"""A tracking server for cluster mode: MLflow over PostgreSQL, bound to loopback by default.

    python -m ftsweep.ops.server                    # a local PostgreSQL cluster + MLflow on 127.0.0.1:5000
    python -m ftsweep.ops.server --backend-store-uri postgresql://user:pw@db:5432/mlflow \\
        --host 0.0.0.0 --allowed-hosts tracker.internal:5000

Trials on workers log to it with `tracking.uri=http://HOST:PORT`. What it runs is

    mlflow server --backend-store-uri postgresql://... --artifacts-destination DIR \\
        --host 127.0.0.1 --port 5000

with the backend URI passed in the environment (`MLFLOW_BACKEND_STORE_URI`), not on the command
line, so its password is not shown to every user by `ps`, and never printed.

Without a backend URI it starts a local PostgreSQL cluster first (`ftsweep.ops.postgres`).

An MLflow server has no authentication of its own: keep it on loopback, or behind a firewall
or an authenticating proxy, when `--host` opens it to a network.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ftsweep.ops.postgres import DEFAULT_PG_PORT, LocalPostgres, ServerError
from ftsweep.tracking.redact import redact_uri

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# --- the MLflow server -------------------------------------------------------------------------


def _mlflow_command() -> list[str]:
    return [sys.executable, "-m", "mlflow"]


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def server_url(host: str, port: int) -> str:
    host = _probe_host(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def wait_until_ready(
    url: str, timeout_s: float, process: subprocess.Popen | None = None, where: str = ""
) -> None:
    """Poll the server's /health until it answers, the process exits, or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerError(
                f"the MLflow server exited with code {process.returncode} while starting{where}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise ServerError(
        f"the MLflow server at {url} did not answer /health within {timeout_s:g} s{where}"
    )


def start_tracking_server(
    backend_store_uri: str,
    artifacts_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int | None = None,
    allowed_hosts: str | None = None,
    log_file: Path | None = None,
    timeout_s: float = 120,
) -> subprocess.Popen:
    """Start `mlflow server` in its own process group and wait until it answers.

    Binds to loopback unless `host` says otherwise. The backend URI travels in the
    environment, not in argv. Stop it with `stop_tracking_server`.
    """
    artifacts_dir = Path(artifacts_dir).resolve()
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        *_mlflow_command(),
        "server",
        "--artifacts-destination",
        str(artifacts_dir),
        "--host",
        host,
        "--port",
        str(port),
    ]
    if workers:
        cmd += ["--workers", str(workers)]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    env = os.environ | {"MLFLOW_BACKEND_STORE_URI": backend_store_uri}
    # MLflow's background job runners (GenAI scorers, six processes) serve nothing a sweep uses.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # Its output goes to log_file, or to this process's own output when there is none.
    out = open(log_file, "ab") if log_file else None  # noqa: SIM115
    try:
        process = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
    finally:
        if out:
            out.close()
    try:
        where = f" (log: {log_file})" if log_file else ""
        wait_until_ready(server_url(host, port), timeout_s, process, where)
    except BaseException:
        stop_tracking_server(process)
        raise
    return process


def stop_tracking_server(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM the server's process group (the server and its workers), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout_s)
    except ProcessLookupError:
        pass


# --- python -m ftsweep.ops.server --------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ftsweep.ops.server",
        description="An MLflow tracking server over PostgreSQL for trials on other machines "
        "(tracking.uri=http://HOST:PORT). Without --backend-store-uri it starts a local "
        "PostgreSQL cluster in --state-dir.",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind (default 127.0.0.1; 0.0.0.0 opens it to the network: MLflow has "
        "no authentication, so use a firewall or an authenticating proxy)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--artifacts", type=Path, default=Path("results/mlartifacts"))
    parser.add_argument(
        "--backend-store-uri",
        default=os.environ.get("FTSWEEP_BACKEND_STORE_URI"),
        help="an existing database (default: $FTSWEEP_BACKEND_STORE_URI, else a local cluster)",
    )
    parser.add_argument("--state-dir", type=Path, default=Path("results/postgres"))
    parser.add_argument("--pg-port", type=int, default=DEFAULT_PG_PORT)
    parser.add_argument("--workers", type=int, default=None, help="server worker processes")
    parser.add_argument(
        "--allowed-hosts", default=None, help="Host headers to accept when --host is not loopback"
    )
    return parser


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    postgres = None
    try:
        if args.backend_store_uri:
            backend = args.backend_store_uri
        else:
            postgres = LocalPostgres(args.state_dir, port=args.pg_port).start()
            backend = postgres.uri
        if args.host not in LOOPBACK:
            print(
                f"warning: binding to {args.host}: the MLflow server has no authentication; "
                "keep it behind a firewall or an authenticating proxy",
                file=sys.stderr,
            )
        process = start_tracking_server(
            backend,
            args.artifacts,
            host=args.host,
            port=args.port,
            workers=args.workers,
            allowed_hosts=args.allowed_hosts,
        )
    except ServerError as exc:
        print(f"ftsweep.server: {exc}", file=sys.stderr)
        if postgres is not None:
            postgres.stop()
        return 1
    url = server_url(args.host, args.port)
    print(f"MLflow tracking server on {url}")
    print(f"  backend store: {redact_uri(backend)}")
    print(f"  artifacts: {Path(args.artifacts).resolve()}")
    print(f"  trials log to it with: tracking.uri={url}")
    print("Ctrl-C stops it" + (" and its PostgreSQL" if postgres else ""))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = process.wait()
        print(f"ftsweep.server: the MLflow server exited with code {code}", file=sys.stderr)
        return code or 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_tracking_server(process)
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    sys.exit(main())
