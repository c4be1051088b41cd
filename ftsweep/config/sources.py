"""Where configs come from, first match winning where names collide:

1. `sweep=path/to/file.yaml` (any existing `.yaml`/`.yml` file, relative to the working
   directory or absolute): that file is the sweep;
2. the working directory's `sweeps/` (the `sweep` group) and `conf/` (every group, and a
   `conf/config.yaml` replaces the shipped primary config);
3. the shipped `conf/` and `sweeps/`: the source checkout's top-level folders, or their copies
   inside the installed package (`ftsweep/_configs/`), whichever this ftsweep runs from.

Hydra sees this as one search path: a per-call overlay folder holding the primary config and
the `sweep` group (links to the files above, in that order), then the user's `conf/`, then the
shipped `conf/` (`hydra.searchpath`).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ftsweep.config.schema import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# An installed wheel carries the configs inside the package (see pyproject.toml); a source
# checkout (editable install included) reads the top-level conf/ and sweeps/.
_PACKAGED = Path(__file__).resolve().parents[1] / "_configs"
if (_PACKAGED / "conf").is_dir():
    CONF_DIR = _PACKAGED / "conf"
    SWEEPS_DIR = _PACKAGED / "sweeps"
else:
    CONF_DIR = PROJECT_ROOT / "conf"
    SWEEPS_DIR = PROJECT_ROOT / "sweeps"

SWEEP_SUFFIXES = (".yaml", ".yml")


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _user_dir(name: str) -> Path | None:
    """The working directory's `conf/` or `sweeps/`, unless it is the shipped one itself."""
    folder = Path.cwd() / name
    shipped = CONF_DIR if name == "conf" else SWEEPS_DIR
    return folder if folder.is_dir() and not _same_dir(folder, shipped) else None


def config_roots() -> list[Path]:
    """Folders of config groups, first match winning: the user's `conf/`, the shipped one."""
    user = _user_dir("conf")
    return [user, CONF_DIR] if user else [CONF_DIR]


def _sweep_dirs() -> list[Path]:
    user = _user_dir("sweeps")
    dirs = [user] if user else []
    dirs += [root / "sweep" for root in config_roots()[:-1]]
    return [*dirs, SWEEPS_DIR, CONF_DIR / "sweep"]


def _option_files(group: str) -> dict[str, Path]:
    """Each option of a group and the file it is read from, the first in precedence order."""
    if group == "sweep":
        folders, suffixes = _sweep_dirs(), SWEEP_SUFFIXES
    else:
        folders, suffixes = [root / group for root in config_roots()], (".yaml",)
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix in suffixes and path.is_file():
                found.setdefault(path.stem, path)
    return found


def group_options(group: str) -> list[str]:
    """The options of a config group, shipped and the user's (`hardware` -> ["a100-80gb", ...])."""
    return sorted(_option_files(group))


# A name read back from a store (an MLflow param) that stands for a config option.
_STORED_NAME = re.compile(r"[\w.-]+")


def stored_option(group: str, name: object, what: str) -> str:
    """A group option's name read back from a store (`what` says where from), checked to be a
    plain name and an option of the group: never a Hydra override, a path or a YAML value."""
    if not isinstance(name, str) or not _STORED_NAME.fullmatch(name) or name.strip(".") == "":
        raise ConfigError(f"{what} {name!r} is not the name of a {group} option")
    options = group_options(group)
    if name not in options:
        raise ConfigError(
            f"{what} {name!r} is no {group} option here (allowed: {', '.join(options)})"
        )
    return name


def option_file(group: str, name: str) -> Path:
    """The file an option is read from (the user's where it shadows a shipped one)."""
    files = _option_files(group)
    if name not in files:
        raise ConfigError(f"{group}={name}: no such {group} (allowed: {', '.join(sorted(files))})")
    return files[name]


def _primary_config() -> Path:
    for root in config_roots():
        if (root / "config.yaml").is_file():
            return root / "config.yaml"
    raise ConfigError(f"{CONF_DIR / 'config.yaml'}: missing (a broken install of ftsweep?)")


def _sweep_path(value: str) -> Path:
    """`sweep=some/file.yaml` -> the file; a missing one is a one-line ConfigError."""
    path = Path(value).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.exists():
        named = (
            Path(value).stem in _option_files("sweep")
            and f"; did you mean sweep={Path(value).stem}?"
        )
        raise ConfigError(f"sweep={value}: no such file ({path}{named or ''})")
    if not path.is_file():
        raise ConfigError(f"sweep={value}: not a file ({path})")
    return path


def link_file(target: Path, link: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    try:
        link.symlink_to(target.resolve())
    except OSError:  # no symlinks here (some Windows setups): a copy reads the same
        shutil.copyfile(target, link)


@contextlib.contextmanager
def hydra_search_path(overrides: list[str]) -> Iterator[tuple[list[str], dict[str, Path]]]:
    """Hydra initialized over the overlay, shipped and user configs, for one composition.

    Yields the overrides to compose with (a `sweep=FILE.yaml` replaced by the overlay's name
    for it, plus `hydra.searchpath`) and the overlay's files by the path Hydra reports them at.
    """
    from hydra import initialize_config_dir

    with tempfile.TemporaryDirectory(prefix="ftsweep-conf-") as tmp:
        overlay = Path(tmp)
        links: dict[str, Path] = {}

        def add(target: Path, relative: str) -> None:
            link_file(target, overlay / relative)
            links[str(overlay / relative)] = target

        add(_primary_config(), "config.yaml")
        (overlay / "sweep").mkdir()
        for name, path in _option_files("sweep").items():
            add(path, f"sweep/{name}.yaml")
        composed = []
        for override in overrides:
            key, sep, value = override.partition("=")
            if sep and key == "sweep" and value.lower().endswith(SWEEP_SUFFIXES):
                path = _sweep_path(value)
                name = "file-" + re.sub(r"[^\w-]", "_", path.stem)
                add(path, f"sweep/{name}.yaml")
                override = f"sweep={name}"
            composed.append(override)
        roots = ",".join(_quoted(f"file://{root}") for root in config_roots())
        composed.append(f"hydra.searchpath=[{roots}]")
        with initialize_config_dir(config_dir=str(overlay), version_base="1.3"):
            yield composed, links


def _quoted(text: str) -> str:
    """A Hydra override's quoted string."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
