"""What a valid config may still name wrongly, checked before anything runs: the tracking
store's URI, and the user's data files (existence, UTF-8, and readable as the trial reads them).
"""

from __future__ import annotations

from pathlib import Path

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
    store's URI, and (with `data`) the user's data files, read once as the trial reads them."""
    check_tracking_uri(cfg.tracking.uri)
    if data:
        check_data(cfg.data)


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
    from ftsweep.data.tasks import get_task

    try:
        get_task(data).split(data.num_train, data.num_eval, data.seed)
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
