"""A local PostgreSQL cluster for the tracking server (tests and `make tracking-server`).

Made with the PostgreSQL server binaries (Debian: `apt-get install postgresql`; they live in
/usr/lib/postgresql/VERSION/bin). It listens on 127.0.0.1 only, has no Unix socket, and its
one role logs in with a generated password kept in STATE_DIR/password (mode 0600). PostgreSQL
refuses to run as root, so under root the cluster is made and run as the `postgres` user.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ftsweep.tracking.redact import redact_uri

DEFAULT_PG_PORT = 5433


class ServerError(RuntimeError):
    """The tracking server or its database could not be started; the message says why."""


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


