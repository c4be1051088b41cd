"""A local PostgreSQL cluster for the tracking server (tests and `make tracking-server`).

Made with the PostgreSQL server binaries (Debian: `apt-get install postgresql`; they live in
/usr/lib/postgresql/VERSION/bin). It listens on 127.0.0.1 only and has no Unix socket.

Two roles, each logging in with a generated password kept in the state dir (mode 0600):

- `ftsweep_admin` (admin_password), the cluster's superuser, used only here to set it up;
- `ftsweep` (password), which owns the `mlflow` database and nothing else: no superuser, no
  CREATEDB, no CREATEROLE. MLflow connects as this role.

PostgreSQL refuses to run as root, so under root the cluster is made and run as the `postgres`
user, and the state dir is handed to it. Nothing there is opened through a link: the state
dir must not be one, its password files are created with O_CREAT | O_EXCL | O_NOFOLLOW inside
the already-opened folder and read with O_NOFOLLOW, and the owner of each is checked (this user
or, under root, `postgres`); a planted link cannot make root chown or overwrite another file.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ftsweep.tracking.redact import redact_uri

DEFAULT_PG_PORT = 5433
ADMIN_ROLE = "ftsweep_admin"
CLUSTER_OWNER = "postgres"  # who owns the cluster when ftsweep runs as root


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
        # Not resolved: a state dir that is a link is refused, not followed.
        self.state_dir = Path(os.path.abspath(self.state_dir))
        self.bin_dir = self.bin_dir or postgres_bin_dir()
        if self.bin_dir is None:
            raise ServerError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
                "(Debian: apt-get install postgresql) or pass --backend-store-uri"
            )
        if self.user == ADMIN_ROLE:
            raise ServerError(f"user={ADMIN_ROLE} is the cluster's superuser; choose another")

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
    def admin_password_file(self) -> Path:
        return self.state_dir / "admin_password"

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI MLflow connects with (it holds the password: never print it)."""
        password = self._read_secret(self.password_file)
        return f"postgresql://{self.user}:{password}@127.0.0.1:{self.port}/{self.database}"

    # --- who owns what ---------------------------------------------------------------------

    @staticmethod
    def _owner_ids() -> tuple[int, int] | None:
        """(uid, gid) the cluster's files belong to under root; None when not root."""
        if os.geteuid() != 0:
            return None
        import pwd

        try:
            entry = pwd.getpwnam(CLUSTER_OWNER)
        except KeyError:
            raise ServerError(
                f"running as root, the cluster must belong to the `{CLUSTER_OWNER}` user, which "
                "does not exist (Debian's postgresql package creates it)"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def _allowed_owners(self) -> set[int]:
        ids = self._owner_ids()
        return {os.geteuid()} | ({ids[0]} if ids else set())

    def _owner_cmd(self, cmd: list[str]) -> list[str]:
        # initdb and pg_ctl refuse root: the cluster belongs to the postgres user then.
        if os.geteuid() != 0:
            return cmd
        return ["runuser", "-u", CLUSTER_OWNER, "--", *cmd]

    def _open_state_dir(self) -> int:
        """The state dir, created 0700 where missing, opened without following a link, its owner
        checked, and (under root) handed to the postgres user; returns its descriptor."""
        if self.state_dir.is_symlink():
            raise ServerError(
                f"{self.state_dir} is a symbolic link: the state dir must be a folder of its own"
            )
        self.state_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(self.state_dir, 0o700)
        except FileExistsError:
            pass
        try:
            fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise ServerError(f"{self.state_dir}: not a folder of its own ({exc})") from None
        try:
            st = os.fstat(fd)
            if st.st_uid not in self._allowed_owners():
                raise ServerError(
                    f"{self.state_dir} belongs to uid {st.st_uid}: choose a state dir of your own"
                )
            os.fchmod(fd, 0o700)
            ids = self._owner_ids()
            if ids:
                os.fchown(fd, *ids)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _prepare_state_dir(self) -> int:
        fd = self._open_state_dir()
        if os.geteuid() == 0:
            probe = _run(
                self._owner_cmd(["test", "-w", str(self.state_dir)]),
                "checking the state dir",
                check=False,
            )
            if probe.returncode != 0:
                os.close(fd)
                raise ServerError(
                    f"the postgres user cannot reach {self.state_dir}: choose a state dir whose "
                    "parent folders others may enter (e.g. under /tmp or /var/lib)"
                )
        return fd

    def _write_secret(self, dir_fd: int, name: str) -> str:
        """A new password in `name` inside the opened state dir: never through a link, never
        over a file that is there (a leftover of a failed init is removed first)."""
        value = secrets.token_urlsafe(24)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            os.unlink(name, dir_fd=dir_fd)  # removes a link itself, never its target
            fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        try:
            ids = self._owner_ids()
            if ids:
                os.fchown(fd, *ids)
            os.write(fd, (value + "\n").encode())
        finally:
            os.close(fd)
        return value

    def _read_secret(self, path: Path) -> str:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise ServerError(f"{path}: cannot be read as a file of its own ({exc})") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid not in self._allowed_owners():
                raise ServerError(f"{path}: not a file of this cluster's owner")
            if st.st_mode & 0o077:
                raise ServerError(f"{path}: readable by others (mode {st.st_mode & 0o777:04o})")
            return os.read(fd, 4096).decode().strip()
        finally:
            os.close(fd)

    # --- the cluster -----------------------------------------------------------------------

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster (once): its superuser `ftsweep_admin` with a generated password.
        The role MLflow uses is made when the cluster starts (`_ensure_role_and_database`)."""
        fd = self._prepare_state_dir()
        try:
            if self.initialized():
                if not self.admin_password_file.exists():
                    raise ServerError(
                        f"{self.state_dir} was made by an older ftsweep whose MLflow role is the "
                        "cluster's superuser: dump what you keep (pg_dump), remove the folder and "
                        "start again for a cluster whose database belongs to an ordinary role"
                    )
                return
            self._write_secret(fd, self.admin_password_file.name)
            self._write_secret(fd, self.password_file.name)
        finally:
            os.close(fd)
        _run(
            self._owner_cmd(
                [
                    str(self.bin_dir / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    ADMIN_ROLE,
                    "--pwfile",
                    str(self.admin_password_file),
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
        """Initialise if needed, start on 127.0.0.1:port, and make MLflow's role and database."""
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
        self._ensure_role_and_database()
        return self

    def admin_connection(self, dbname: str = "postgres"):
        """A psycopg connection as the cluster's superuser (for set-up and tests)."""
        import psycopg

        try:
            return psycopg.connect(
                host="127.0.0.1",
                port=self.port,
                user=ADMIN_ROLE,
                password=self._read_secret(self.admin_password_file),
                dbname=dbname,
                autocommit=True,
                connect_timeout=30,
            )
        except psycopg.Error as exc:
            raise ServerError(f"connecting to PostgreSQL as {ADMIN_ROLE}: {exc}") from None

    def _ensure_role_and_database(self) -> None:
        """MLflow's role (login, no privileges beyond its database) owning the database; its
        password is sent hashed (SCRAM), so no log of the server ever holds it."""
        from psycopg import sql

        password = self._read_secret(self.password_file)
        with self.admin_connection() as conn:
            hashed = conn.pgconn.encrypt_password(
                password.encode(), self.user.encode(), b"scram-sha-256"
            ).decode()
            role = sql.Identifier(self.user)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,))
            verb = "ALTER" if exists.fetchone() else "CREATE"
            conn.execute(
                sql.SQL(
                    verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                    "NOBYPASSRLS PASSWORD {}"
                ).format(role, sql.Literal(hashed))
            )
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                (self.database,),
            ).fetchone()
            db = sql.Identifier(self.database)
            if owner is None:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
            elif owner[0] != self.user:
                conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, role))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))

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
