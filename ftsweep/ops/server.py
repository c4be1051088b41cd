"""A tracking server for cluster mode: MLflow over PostgreSQL, locked down by default.

    python -m ftsweep.ops.server                    # a local PostgreSQL cluster + MLflow on 127.0.0.1:5000
    MLFLOW_AUTH_ADMIN_PASSWORD=... python -m ftsweep.ops.server --auth \\
        --host 0.0.0.0 --allowed-hosts tracker.internal:5000,10.0.0.5:5000

Trials on workers log to it with `tracking.uri=http://HOST:PORT` (credentials, with --auth, in
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD). What it runs is

    mlflow server --artifacts-destination DIR-OR-URI --host 127.0.0.1 --port 5000 \\
        --allowed-hosts 127.0.0.1:5000,localhost:5000,[::1]:5000 [--app-name basic-auth]

with the backend URI passed in the environment (`MLFLOW_BACKEND_STORE_URI`), not on the command
line, so its password is not shown to every user by `ps`, and never printed.

What it does about the network and other users:

- **Host header**: `--allowed-hosts` is always passed, exact: the host:port it binds, the
  localhost variants, and the names given with `--allowed-hosts` (MLflow's own default also
  accepts any private address, `10.*` included, which lets DNS rebinding through).
- **Authentication** (`--auth`): MLflow's basic-auth app. Its config (`basic_auth.ini`, 0600,
  in `--auth-dir`) holds no password; the admin account is made on first start from
  MLFLOW_AUTH_ADMIN_USERNAME (default `admin`) and MLFLOW_AUTH_ADMIN_PASSWORD in the
  environment, never from the command line. Users and permissions live in
  `--auth-dir`/basic_auth.db; new experiments are readable by every user (`READ`), writable by
  their creator and whom an admin grants it. Binding beyond loopback without --auth warns.
- **No root**: started as root, the MLflow server runs as an unprivileged user (`--run-as`,
  default `postgres`, the owner of the local cluster), which then owns the artifacts and auth
  folders; `--allow-root` keeps root, for a machine where no other user can run this Python.

Without a backend URI it starts a local PostgreSQL cluster first (`ftsweep.ops.postgres`).
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
from ftsweep.ops.service import (
    AUTH_APP,
    DEFAULT_SERVICE_USER,
    as_user,
    check_auth_ready,
    check_user_can_serve,
    own_folder,
    prepare_basic_auth,
    service_user,
    user_env,
)
from ftsweep.tracking.redact import redact_uri

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WILDCARD = {"0.0.0.0", "", "::"}


# --- the MLflow server -------------------------------------------------------------------------


def _mlflow_command() -> list[str]:
    return [sys.executable, "-m", "mlflow"]


def is_uri(location: Path | str) -> bool:
    """Whether an artifact location is a URI (`s3://...`) rather than a folder."""
    return "://" in str(location)


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


def allowed_hosts_for(host: str, port: int, extra: str | None = None) -> str:
    """The exact Host headers the server accepts: what it binds, the localhost variants, and
    `extra` (comma-separated host:port names clients use, e.g. `tracker.internal:5000`)."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    if host not in WILDCARD and host not in LOOPBACK:
        names.append(f"[{host}]" if ":" in host else host)
    hosts = [f"{name}:{port}" for name in names]
    if port == 80:  # a client leaves the default port out of its Host header
        hosts += names
    hosts += [h.strip() for h in (extra or "").split(",") if h.strip()]
    return ",".join(dict.fromkeys(hosts))


def _open_log(log_file: Path) -> int:
    """The server's log, appended to; never through a link, private to its owner."""
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        raise ServerError(f"{log_file} belongs to someone else: choose another log file")
    return fd


def start_tracking_server(
    backend_store_uri: str,
    artifacts_dir: Path | str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int | None = None,
    allowed_hosts: str | None = None,
    log_file: Path | None = None,
    timeout_s: float = 120,
    auth_dir: Path | None = None,
    run_as: str | None = None,
    allow_root: bool = False,
) -> subprocess.Popen:
    """Start `mlflow server` in its own process group and wait until it answers.

    Binds to loopback unless `host` says otherwise and accepts only the Host headers of
    `allowed_hosts_for`. With `auth_dir`, MLflow's basic-auth app guards it
    (`prepare_basic_auth`). Under root it runs as `service_user`. The backend URI travels in
    the environment, not in argv. Stop it with `stop_tracking_server`.

    `artifacts_dir` is a folder, or an object store's URI (`s3://bucket/prefix`: MLflow reaches it
    with boto3, credentials and endpoint from the environment, e.g. AWS_ACCESS_KEY_ID,
    MLFLOW_S3_ENDPOINT_URL). Clients upload through the server either way.
    """
    entry = service_user(run_as, allow_root)
    if auth_dir is not None:
        check_auth_ready(auth_dir)
    served: list[Path] = []  # folders the server writes to, handed to the service user
    if not is_uri(artifacts_dir):
        artifacts_dir = own_folder(Path(artifacts_dir).resolve(), entry)
        served.append(artifacts_dir)
    cmd = [
        *_mlflow_command(),
        "server",
        "--artifacts-destination",
        str(artifacts_dir),
        "--host",
        host,
        "--port",
        str(port),
        "--allowed-hosts",
        allowed_hosts_for(host, port, allowed_hosts),
    ]
    if workers:
        cmd += ["--workers", str(workers)]
    env = os.environ | {"MLFLOW_BACKEND_STORE_URI": backend_store_uri}
    if auth_dir is not None:
        env |= prepare_basic_auth(auth_dir, entry)
        cmd += ["--app-name", AUTH_APP]
    # MLflow's background job runners (GenAI scorers, six processes) serve nothing a sweep uses.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    check_user_can_serve(entry, served + ([Path(auth_dir).resolve()] if auth_dir else []))
    # Its output goes to log_file, or to this process's own output when there is none.
    out = _open_log(Path(log_file)) if log_file else None
    try:
        process = subprocess.Popen(
            cmd,
            env=user_env(env, entry),
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,
            cwd=(str(served[0]) if served else "/") if entry is not None else None,
            **as_user(entry),
        )
    finally:
        if out is not None:
            os.close(out)
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
        help="address to bind (default 127.0.0.1; 0.0.0.0 opens it to the network: use --auth, "
        "and list the names clients use in --allowed-hosts)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--artifacts",
        default="results/mlartifacts",
        help="where artifacts are stored: a folder, or s3://bucket/prefix (default %(default)s)",
    )
    parser.add_argument(
        "--backend-store-uri",
        default=os.environ.get("FTSWEEP_BACKEND_STORE_URI"),
        help="an existing database (default: $FTSWEEP_BACKEND_STORE_URI, else a local cluster)",
    )
    parser.add_argument("--state-dir", type=Path, default=Path("results/postgres"))
    parser.add_argument("--pg-port", type=int, default=DEFAULT_PG_PORT)
    parser.add_argument("--workers", type=int, default=None, help="server worker processes")
    parser.add_argument(
        "--allowed-hosts",
        default=None,
        help="further Host headers to accept, exact host:port, comma-separated (the bound "
        "address and localhost are always accepted; nothing else is)",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="MLflow's basic-auth app: the admin from MLFLOW_AUTH_ADMIN_USERNAME / "
        "MLFLOW_AUTH_ADMIN_PASSWORD in the environment, users and permissions in --auth-dir",
    )
    parser.add_argument("--auth-dir", type=Path, default=Path("results/mlflow-auth"))
    parser.add_argument(
        "--run-as",
        default=None,
        help=f"under root: the unprivileged user the MLflow server runs as (default {DEFAULT_SERVICE_USER})",
    )
    parser.add_argument(
        "--allow-root",
        action="store_true",
        help="under root: keep the MLflow server running as root (not recommended)",
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
        if args.host not in LOOPBACK and not args.auth:
            print(
                f"warning: binding to {args.host} without --auth: anyone who reaches it can read "
                "and write every run; use --auth, or a firewall and an authenticating proxy",
                file=sys.stderr,
            )
        if os.geteuid() == 0 and args.allow_root:
            print("warning: --allow-root: the MLflow server runs as root", file=sys.stderr)
        process = start_tracking_server(
            backend,
            args.artifacts,
            host=args.host,
            port=args.port,
            workers=args.workers,
            allowed_hosts=args.allowed_hosts,
            auth_dir=args.auth_dir if args.auth else None,
            run_as=args.run_as,
            allow_root=args.allow_root,
        )
    except ServerError as exc:
        print(f"ftsweep.server: {exc}", file=sys.stderr)
        if postgres is not None:
            postgres.stop()
        return 1
    url = server_url(args.host, args.port)
    print(f"MLflow tracking server on {url}")
    print(f"  backend store: {redact_uri(backend)}")
    artifacts = args.artifacts if is_uri(args.artifacts) else Path(args.artifacts).resolve()
    print(f"  artifacts: {artifacts}")
    print(f"  accepts Host: {allowed_hosts_for(args.host, args.port, args.allowed_hosts)}")
    print(f"  trials log to it with: tracking.uri={url}")
    if args.auth:
        print("  authentication: on (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)")
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
