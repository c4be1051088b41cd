"""Who the tracking server runs as, and how it authenticates its users.

Started as root, the server drops to a service user (`--run-as`, default `postgres`), whose
folders it owns; with `--auth`, MLflow's basic-auth app checks every request, with the admin's
credentials taken from the environment (never from the command line or a file on disk).
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

from ftsweep.ops.postgres import ServerError

ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
ADMIN_USERNAME_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"
AUTH_APP = "basic-auth"
DEFAULT_SERVICE_USER = "postgres"


def service_user(run_as: str | None = None, allow_root: bool = False):
    """Who the MLflow server runs as: None (this process's user) unless this is root, then the
    unprivileged `run_as` (default `postgres`) as a `pwd` entry; `allow_root` keeps root."""
    if os.geteuid() != 0 or allow_root:
        return None
    import pwd

    name = run_as or DEFAULT_SERVICE_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ServerError(
            f"running as root, the MLflow server runs as an unprivileged user, and {name!r} does "
            "not exist: create one (e.g. `useradd --system mlflow`) and pass --run-as mlflow, or "
            "start it as a non-root user"
        ) from None
    if entry.pw_uid == 0:
        raise ServerError(f"--run-as {name}: that is root; choose an unprivileged user")
    return entry


def as_user(entry) -> dict:
    """subprocess arguments that run a child as `entry` (its groups only)."""
    if entry is None:
        return {}
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def user_env(env: dict, entry) -> dict:
    if entry is None:
        return env
    return env | {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name}


def check_user_can_serve(entry, folders: list[Path]) -> None:
    """The service user can run this Python with MLflow and write where the server writes."""
    if entry is None:
        return
    probe = "import sys, os, mlflow; sys.exit(0 if all(os.access(p, os.W_OK | os.X_OK) for p in sys.argv[1:]) else 3)"
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe, *map(str, folders)],
            capture_output=True,
            text=True,
            env=user_env({"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, entry),
            cwd="/",
            **as_user(entry),
        )
        code = result.returncode
    except OSError:  # it cannot even start this Python
        code = 1
    if code == 3:
        raise ServerError(
            f"the MLflow server would run as {entry.pw_name}, who cannot write to "
            f"{', '.join(map(str, folders))}: choose folders whose parents {entry.pw_name} may "
            "enter (e.g. under /var/lib or /srv)"
        )
    if code != 0:
        raise ServerError(
            f"the MLflow server would run as {entry.pw_name} (root is dropped), who cannot run "
            f"{sys.executable} with mlflow (a folder on the way is private?): install ftsweep where "
            f"{entry.pw_name} can read it, pass --run-as USER for a user who can, or --allow-root"
        )


def own_folder(path: Path, entry) -> Path:
    """`path` created 0700 where missing (never through a link) and handed to the service user."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if entry is not None:
            if st.st_uid not in (0, entry.pw_uid):
                raise ServerError(f"{path} belongs to uid {st.st_uid}: choose a folder of your own")
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        elif st.st_uid != os.geteuid():
            raise ServerError(f"{path} belongs to uid {st.st_uid}, not you: choose your own folder")
        if stat.S_IMODE(st.st_mode) & 0o022:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


def check_auth_ready(auth_dir: Path) -> None:
    if not os.environ.get(ADMIN_PASSWORD_ENV) and not (Path(auth_dir) / "basic_auth.db").exists():
        raise ServerError(
            f"--auth needs the admin's password in {ADMIN_PASSWORD_ENV} (and optionally "
            f"{ADMIN_USERNAME_ENV}, default admin) for the first start; it is never taken from "
            "the command line"
        )


def prepare_basic_auth(auth_dir: Path, entry=None) -> dict[str, str]:
    """MLflow's basic-auth app, configured in `auth_dir`: the environment the server needs.

    The ini file holds no password: the admin account is created on the first start from
    MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD in this environment.
    """
    check_auth_ready(auth_dir)
    auth_dir = own_folder(Path(auth_dir).resolve(), entry)
    database = auth_dir / "basic_auth.db"
    ini = auth_dir / "basic_auth.ini"
    text = (
        "[mlflow]\n"
        "# Written by ftsweep.ops.server. No password here: see MLFLOW_AUTH_ADMIN_PASSWORD.\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{database}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    fd = os.open(ini, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if entry is not None:
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        # Signs the UI's sessions and CSRF tokens; shared by the server's workers.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
        or secrets.token_urlsafe(32),
    }
