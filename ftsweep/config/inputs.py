"""What a valid config may still name wrongly, checked before anything runs: the tracking
store's URI, the results folder (the user's own, `ftsweep.trust`), and the user's data files
(existence, UTF-8, and readable as the trial reads them).

Credentials never stay in a config (`move_credentials`): a config is stored by Ray (the trial's
params.json/params.pkl, tuner.pkl) and travels to every worker, so a password or token in
`tracking.uri` is moved into the environment variables its client reads (MLflow's
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / MLFLOW_TRACKING_TOKEN, libpq's
PGPASSWORD) and the config keeps the bare URI. Workers of a local Ray instance inherit them
from the driver's environment; a cluster's nodes need them where `ray start` runs.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ftsweep.config.schema import Config, ConfigError, DataConfig

# Schemes of an MLflow tracking store this install can open (MLflow also knows databricks and
# uc, which need a Databricks workspace). The databases go through SQLAlchemy.
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "file", "http", "https")
# SQLAlchemy's default driver per database, and the module of each driver a URI may name
# (`postgresql+psycopg2://`); a driver not listed here is left for SQLAlchemy to judge.
_DEFAULT_DRIVER = {
    "sqlite": "pysqlite",
    "postgresql": "psycopg",
    "mysql": "mysqldb",
    "mssql": "pyodbc",
}
_DRIVER_MODULES = {
    "pysqlite": "sqlite3",
    "psycopg": "psycopg",
    "psycopg2": "psycopg2",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "mysqldb": "MySQLdb",
    "pymysql": "pymysql",
    "mysqlconnector": "mysql.connector",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}


def check_inputs(cfg: Config, data: bool = True) -> None:
    """What a valid config may still name wrongly, checked before anything runs: the tracking
    store's URI, the results folder, and (with `data`) the user's data files, read once as the
    trial reads them."""
    from ftsweep.trust import check_results_dir

    check_tracking_uri(cfg.tracking.uri)
    check_results_dir(cfg.results_path)
    if data:
        check_data(cfg.data)


# --- credentials: out of the config, into the environment -----------------------------------

MLFLOW_USERNAME = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
MLFLOW_TOKEN = "MLFLOW_TRACKING_TOKEN"
PG_PASSWORD = "PGPASSWORD"
# Query keys that carry a secret (as ftsweep.tracking.redact sees them).
_SECRET_KEY = re.compile(r"token|passw|pwd|secret|key|sig|credential|auth", re.IGNORECASE)
# Drivers that read libpq's PGPASSWORD.
_LIBPQ_DRIVERS = ("", "psycopg", "psycopg2")
_warned: set[tuple[str, ...]] = set()


def split_credentials(uri: str) -> tuple[str, dict[str, str]]:
    """`http://u:pw@host:5000` -> ("http://host:5000", {MLFLOW_TRACKING_USERNAME: "u", ...}).

    http(s): user and password -> MLflow's username/password variables, a user alone (a token)
    -> MLFLOW_TRACKING_TOKEN. postgresql: the password (in the userinfo or `?password=`) ->
    PGPASSWORD, the user name stays. Any other secret a URI carries cannot be moved: a
    ConfigError says where to put it instead.
    """
    from ftsweep.tracking.redact import redact_uri

    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri, {}  # check_tracking_uri names the problem
    scheme = parts.scheme.lower()
    database, _, driver = scheme.partition("+")
    userinfo, at, host = parts.netloc.rpartition("@")
    env: dict[str, str] = {}
    netloc = parts.netloc
    shown = redact_uri(uri)
    if at:
        user, sep, password = userinfo.partition(":")
        user, password = unquote(user), unquote(password)
        if database in ("http", "https"):
            if sep:
                env |= {MLFLOW_USERNAME: user, MLFLOW_PASSWORD: password}
            else:
                env[MLFLOW_TOKEN] = user
            netloc = host
        elif database == "postgresql" and driver in _LIBPQ_DRIVERS:
            if sep:
                env[PG_PASSWORD] = password
            netloc = f"{userinfo.partition(':')[0]}@{host}"
        elif sep:
            raise ConfigError(
                f"tracking.uri={shown!r}: a password in a {scheme}:// URI would be stored with the "
                "sweep (Ray keeps the config in RESULTS/ray): use a tracking server "
                "(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD) or PostgreSQL (PGPASSWORD)"
            )
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if not _SECRET_KEY.search(key):
            query.append((key, value))
        elif database == "postgresql" and driver in _LIBPQ_DRIVERS and key == "password":
            env[PG_PASSWORD] = value
        else:
            raise ConfigError(
                f"tracking.uri={shown!r}: its query string carries a secret ({key}=...), which "
                "would be stored with the sweep: pass credentials in the environment "
                f"({MLFLOW_USERNAME} / {MLFLOW_PASSWORD} / {MLFLOW_TOKEN}, or PGPASSWORD)"
            )
    if not env:
        return uri, {}
    bare = urlunsplit(
        (parts.scheme, netloc, parts.path, urlencode(query) if query else "", parts.fragment)
    )
    return bare, env


def move_credentials(cfg: Config) -> Config:
    """The config with the bare `tracking.uri`; its credentials set in this process's
    environment (which a local Ray instance's workers inherit), with one warning."""
    uri = cfg.tracking.uri
    if not uri:
        return cfg
    check_tracking_uri(uri)  # a URI that cannot work is named first, as given (redacted)
    bare, env = split_credentials(uri)
    if not env:
        return cfg
    os.environ.update(env)
    names = tuple(sorted(env))
    if names not in _warned:
        _warned.add(names)
        print(
            f"ftsweep: warning: tracking.uri carried credentials; they are now in "
            f"{', '.join(names)} for this process and its Ray workers, and the sweep keeps "
            f"{bare}: set those variables instead of writing credentials into the URI (it is "
            "visible to other users in `ps`)",
            file=sys.stderr,
        )
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"uri": bare})})


def check_tracking_uri(uri: str | None) -> None:
    """A `tracking.uri` MLflow can open here: a known scheme, and its database driver installed."""
    if uri is None:
        return
    from urllib.parse import urlsplit

    from ftsweep.tracking.redact import redact_uri

    shown = redact_uri(uri)
    allowed = (
        f"allowed here: {', '.join(f'{s}://' for s in usable_tracking_schemes())}; "
        "e.g. sqlite:///results/mlflow.db or http://host:5000"
    )
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise ConfigError(f"tracking.uri={shown!r}: not a URI ({exc}; {allowed})") from None
    scheme = parts.scheme.lower()
    database, _, driver = scheme.partition("+")
    if not scheme:
        raise ConfigError(f"tracking.uri={shown!r}: not a URI with a scheme ({allowed})")
    if database not in TRACKING_SCHEMES or (driver and database not in _DEFAULT_DRIVER):
        raise ConfigError(
            f"tracking.uri={shown!r}: MLflow cannot use scheme {scheme}:// here ({allowed})"
        )
    if database in ("http", "https") and not parts.netloc:
        raise ConfigError(f"tracking.uri={shown!r}: no host after {scheme}:// ({allowed})")
    if database in _DEFAULT_DRIVER:
        module = _DRIVER_MODULES.get(driver or _DEFAULT_DRIVER[database])
        if module and not _installed(module):
            raise ConfigError(
                f"tracking.uri={shown!r}: its database driver ({module}) is not installed; "
                f"install it or use another store ({allowed})"
            )


def usable_tracking_schemes() -> list[str]:
    """The TRACKING_SCHEMES this install can open: a database's only where its default
    SQLAlchemy driver is installed."""
    return [
        s
        for s in TRACKING_SCHEMES
        if s not in _DEFAULT_DRIVER or _installed(_DRIVER_MODULES[_DEFAULT_DRIVER[s]])
    ]


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module.split(".")[0]) is not None


def check_data(data: DataConfig) -> None:
    """The user's data (data=jsonl): every file exists and is UTF-8 text, and the task reads
    train and eval examples from it, as a trial will; each problem one line naming the file."""
    if data.task != "jsonl":
        return
    for key, value in (("data.path", data.path), ("data.eval_path", data.eval_path)):
        if value:
            for path in _text_files(key, value):
                _check_utf8(path)
    from ftsweep.data.tasks import get_task, three_way_split

    try:
        three_way_split(get_task(data), data)
    except ConfigError:
        raise
    except Exception as exc:  # a reader's own exception: still the user's file, in one line
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(
            f"data.path={data.path}: cannot read it ({type(exc).__name__}: {detail})"
        ) from None


def _text_files(key: str, value: str) -> list[Path]:
    """The JSON files a data path names (a file, or those of a folder and its data/ and split
    subfolders); a missing path is a ConfigError."""
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"{key}={value}: no such file or folder")
    if path.is_file():
        return [path] if path.suffix.lower() in (".jsonl", ".json") else []
    folders = [path, *sorted(p for p in path.iterdir() if p.is_dir())]
    return [
        f
        for folder in folders
        for f in sorted(folder.iterdir())
        if f.is_file() and f.suffix.lower() in (".jsonl", ".json")
    ]


def _check_utf8(path: Path) -> None:
    try:
        _check_utf8_lines(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _check_utf8_lines(path: Path) -> None:
    with path.open("rb") as lines:
        offset = 0
        for number, line in enumerate(lines, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"{path}:{number}: not UTF-8 text (byte {offset + exc.start}: "
                    f"{line[exc.start : exc.start + 1]!r}); save the file as UTF-8"
                ) from None
            offset += len(line)
