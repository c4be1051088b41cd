"""A tracking server for cluster mode: MLflow over PostgreSQL, bound to loopback by default.

    python -m ftsweep.ops.server                    # a local PostgreSQL cluster + MLflow on 127.0.0.1:5000
    python -m ftsweep.ops.server --backend-store-uri postgresql://user:pw@db:5432/mlflow \\
        --host 0.0.0.0 --allowed-hosts tracker.internal:5000

Trials on workers log to it with `tracking.uri=http://HOST:PORT`. What it runs is

    mlflow server --backend-store-uri postgresql://... --artifacts-destination DIR \\
        --host 127.0.0.1 --port 5000

with the backend URI passed in the environment (`MLFLOW_BACKEND_STORE_URI`), not on the command
line, so its password is not shown to every user by `ps`, and never printed.

The local cluster (`LocalPostgres`, for tests and `make tracking-server`) is made with the
PostgreSQL server binaries (Debian: `apt-get install postgresql`; they live in
/usr/lib/postgresql/VERSION/bin). It listens on 127.0.0.1 only, has no Unix socket, and its
one role logs in with a generated password kept in STATE_DIR/password (mode 0600). PostgreSQL
refuses to run as root, so under root the cluster is made and run as the `postgres` user.

An MLflow server has no authentication of its own: keep it on loopback, or behind a firewall
or an authenticating proxy, when `--host` opens it to a network.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ftsweep.tracking.redact import redact_uri

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_PG_PORT = 5433
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ServerError(RuntimeError):
    """The tracking server or its database could not be started; the message says why."""


# --- PostgreSQL --------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or Debian's /usr/lib/postgresql/VERSION/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)] or [0],
    )
    return versions[-1].parent if versions else None


def _run(cmd: list[str], what: str, env: dict | None = None, check: bool = True):
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        detail = redact_uri((result.stderr or result.stdout).strip())[-2000:]
        raise ServerError(f"{what} failed (exit {result.returncode}): {detail}")
    return result


@dataclass
class LocalPostgres:
    """A PostgreSQL cluster in `state_dir` (data in pgdata/, log in postgres.log) on loopback."""

    state_dir: Path
    port: int = DEFAULT_PG_PORT
    user: str = "ftsweep"
    database: str = "mlflow"
    bin_dir: Path | None = None

    def __post_init__(self):
        self.state_dir = Path(self.state_dir).resolve()
        self.bin_dir = self.bin_dir or postgres_bin_dir()
        if self.bin_dir is None:
            raise ServerError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
                "(Debian: apt-get install postgresql) or pass --backend-store-uri"
            )

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.state_dir / "password"

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI MLflow connects with (it holds the password: never print it)."""
        password = self.password_file.read_text().strip()
        return f"postgresql://{self.user}:{password}@127.0.0.1:{self.port}/{self.database}"

    def _owner_cmd(self, cmd: list[str]) -> list[str]:
        # initdb and pg_ctl refuse root: the cluster belongs to the postgres user then.
        if os.geteuid() != 0:
            return cmd
        return ["runuser", "-u", "postgres", "--", *cmd]

    def _prepare_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        if os.geteuid() != 0:
            return
        try:
            shutil.chown(self.state_dir, "postgres", "postgres")
        except LookupError as exc:
            raise ServerError(
                "running as root, the cluster must belong to the `postgres` user, which does not "
                "exist (Debian's postgresql package creates it)"
            ) from exc
        probe = _run(
            self._owner_cmd(["test", "-w", str(self.state_dir)]),
            "checking the state dir",
            check=False,
        )
        if probe.returncode != 0:
            raise ServerError(
                f"the postgres user cannot reach {self.state_dir}: choose a state dir whose parent "
                "folders others may enter (e.g. under /tmp or /var/lib)"
            )

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster (once): a superuser role with a generated password."""
        self._prepare_state_dir()
        if self.initialized():
            return
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(self.password_file, "postgres", "postgres")
        _run(
            self._owner_cmd(
                [
                    str(self.bin_dir / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    self.user,
                    "--pwfile",
                    str(self.password_file),
                    "--auth-local",
                    "scram-sha-256",
                    "--auth-host",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--no-locale",
                ]
            ),
            "initdb",
        )

    def running(self) -> bool:
        result = _run(
            self._owner_cmd(
                [str(self.bin_dir / "pg_ctl"), "status", "--pgdata", str(self.data_dir)]
            ),
            "pg_ctl status",
            check=False,
        )
        return result.returncode == 0

    def start(self, timeout_s: int = 60) -> LocalPostgres:
        """Initialise if needed, start on 127.0.0.1:port, and create the database."""
        self.init()
        if not self.running():
            # Loopback TCP only; no Unix socket (none to place or to secure).
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories=''"
            )
            _run(
                self._owner_cmd(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "start",
                        "--pgdata",
                        str(self.data_dir),
                        "--log",
                        str(self.log_file),
                        "--wait",
                        "--timeout",
                        str(timeout_s),
                        "-o",
                        options,
                    ]
                ),
                f"starting PostgreSQL (log: {self.log_file})",
            )
        self._create_database()
        return self

    def _create_database(self) -> None:
        env = os.environ | {"PGPASSWORD": self.password_file.read_text().strip()}
        result = _run(
            [
                str(self.bin_dir / "createdb"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--username",
                self.user,
                self.database,
            ],
            "createdb",
            env=env,
            check=False,
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise ServerError(f"createdb failed: {redact_uri(result.stderr.strip())}")

    def stop(self, timeout_s: int = 60) -> None:
        if self.initialized() and self.running():
            _run(
                self._owner_cmd(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "stop",
                        "--pgdata",
                        str(self.data_dir),
                        "--mode",
                        "fast",
                        "--wait",
                        "--timeout",
                        str(timeout_s),
                    ]
                ),
                "stopping PostgreSQL",
            )


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
