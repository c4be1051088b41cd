"""The trust boundary: what ftsweep reads back and may execute lives only where the user alone
can write, and what it wrote itself is signed with a key kept outside those places.

- RESULTS (its checkpoints, Ray's state, the SQLite store), the model cache and the torch
  extensions built there are folders owned by the user and not writable by group or others;
  ftsweep creates them 0700 (`private_dir`) and refuses, with one line, one that someone else
  owns or may write (`check_private`, `check_private_tree`).
- A checkpoint ftsweep wrote carries a manifest whose HMAC is keyed by `secret_key()`: the
  environment's FTSWEEP_SECRET_KEY, else ~/.config/ftsweep/secret (`$XDG_CONFIG_HOME`), made
  once with 32 random bytes, mode 0600 (see `ftsweep.trial.manifest`).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from ftsweep.config.schema import ConfigError

SECRET_ENV = "FTSWEEP_SECRET_KEY"
MIN_SECRET_CHARS = 16


class UntrustedPath(ConfigError):
    """A file or folder ftsweep would read back (and may execute) that the user does not
    alone control; the message names it and what to do."""


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def check_private(path: Path | str, what: str, follow: bool = False) -> os.stat_result:
    """`path` is owned by this user and not writable by group or others; a symbolic link is
    refused unless `follow` (a folder the user named, such as RESULTS, may be a link)."""
    path = Path(path)
    st = os.stat(path) if follow else os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UntrustedPath(
            f"{what} {path} is a symbolic link (to {os.readlink(path)}); ftsweep reads back only "
            "files it wrote itself: remove the link"
        )
    me = os.geteuid()
    if st.st_uid != me:
        raise UntrustedPath(
            f"{what} {path} belongs to {_owner(st.st_uid)}, not to you ({_owner(me)}): ftsweep "
            "loads checkpoints and pickled state from it, so it must be yours alone; choose "
            "a folder of your own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedPath(
            f"{what} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): "
            f"anyone who can write there can plant what ftsweep loads; run `chmod go-w {path}` "
            "(or `chmod 700`)"
        )
    return st


def check_private_tree(path: Path | str, what: str) -> None:
    """`path` and everything under it: owned by this user, not group/other-writable, no links."""
    path = Path(path)
    check_private(path, what)
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in (*dirs, *files):
            check_private(Path(folder) / name, what)


def private_dir(path: Path | str, what: str, root: Path | str | None = None) -> Path:
    """Create `path` (mode 0700) where it is missing, and check it is private.

    With `root` (an ancestor of `path`), every folder from `root` down to `path` is created
    0700 where missing and checked; `root` itself may be a link the user made.
    """
    path = Path(path)
    levels = [path]
    if root is not None:
        root = Path(root)
        levels = [root, *[root / p for p in _steps(path.relative_to(root))]]
    for index, level in enumerate(levels):
        try:
            if index == 0:
                os.makedirs(level, mode=0o700)
            else:
                os.mkdir(level, 0o700)
            os.chmod(level, 0o700)  # whatever the umask
        except FileExistsError:
            pass
        check_private(level, what, follow=index == 0)
    return path


def _steps(relative: Path) -> list[Path]:
    parts = relative.parts
    return [Path(*parts[: i + 1]) for i in range(len(parts))]


def check_results_dir(path: Path, what: str = "results_dir") -> None:
    """An existing RESULTS folder is the user's own and not writable by others (a missing one
    is created 0700 by whatever writes there first)."""
    if path.exists() or path.is_symlink():
        check_private(path, what, follow=True)


# --- the key that signs what ftsweep wrote ----------------------------------------------------


def secret_key_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "ftsweep" / "secret"


def secret_key() -> bytes:
    """The key of checkpoint manifests: FTSWEEP_SECRET_KEY, else the secret file (made once).

    Keep it outside RESULTS: someone who can read it can sign a checkpoint ftsweep will load.
    Every node of a cluster needs the same key (a shared home, or FTSWEEP_SECRET_KEY in the
    environment `ray start` runs in).
    """
    value = os.environ.get(SECRET_ENV)
    if value is not None:
        if len(value) < MIN_SECRET_CHARS:
            raise UntrustedPath(
                f"{SECRET_ENV} is {len(value)} characters long: use at least {MIN_SECRET_CHARS} "
                "random ones (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return value.encode()
    path = secret_key_path()
    private_dir(path.parent, "ftsweep's key folder")
    try:
        return _read_secret(path)
    except FileNotFoundError:
        _create_secret(path)
        return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedPath(f"ftsweep's key {path} is a symbolic link: remove it") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise UntrustedPath(f"ftsweep's key {path} is not a file of your own: remove it")
        if st.st_mode & 0o077:
            raise UntrustedPath(
                f"ftsweep's key {path} may be read by others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): run `chmod 600 {path}`, or remove it for a new one"
            )
        value = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    if len(value) < MIN_SECRET_CHARS:
        raise UntrustedPath(f"ftsweep's key {path} is empty or short: remove it for a new one")
    return value


def _create_secret(path: Path) -> None:
    """Written to a private temporary file and linked into place: a reader never sees half a
    key, and of processes racing to make it one wins."""
    tmp = path.with_name(f".secret-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
