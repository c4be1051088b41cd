"""A user's own folder: conf/ and sweeps/ in the working directory extend and override the
shipped configs, `sweep=FILE.yaml` runs a file, and an installed wheel carries the shipped ones."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ftsweep.config import CONF_DIR, PROJECT_ROOT, SWEEPS_DIR, ConfigError, compose
from ftsweep.config.compose import compose_group, group_options

MY_MODEL = """\
name: mine
name_or_path: builtin:tiny-llama
architecture:
  num_params: 3180160
  hidden_size: 64
  num_layers: 2
  num_heads: 4
  num_kv_heads: 2
  intermediate_size: 128
  vocab_size: 49152
"""

MY_SWEEP = """\
# @package _global_
defaults:
  - override /model: mine

sweep:
  name: {name}
  description: {description}
  algorithm: grid
  space:
    - method: lora
      params: {{learning_rate: 1.0e-3, lora_r: [2, 4], lora_alpha_ratio: 2}}

train:
  max_steps: 3
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A working directory with its own model and sweep, as a user keeps them."""
    _write(tmp_path / "conf" / "model" / "mine.yaml", MY_MODEL)
    _write(tmp_path / "sweeps" / "mine.yaml", MY_SWEEP.format(name="mine", description="my own"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_user_model_and_sweep_are_found_by_name(user_folder):
    assert compose(["model=mine"]).model.name == "mine"
    cfg = compose(["sweep=mine"])
    assert (cfg.sweep.name, cfg.model.name, cfg.train.max_steps) == ("mine", "mine", 3)
    # the shipped ones are all still there
    assert compose(["sweep=smoke"]).model.name == "tiny-llama"
    assert {"mine", "smollm2-135m", "tiny-llama"} <= set(group_options("model"))
    assert {"mine", "smoke", "lora_vs_full"} <= set(group_options("sweep"))


def test_user_sweep_under_conf_sweep_is_found_too(user_folder):
    _write(
        user_folder / "conf" / "sweep" / "other.yaml",
        MY_SWEEP.format(name="other", description="x"),
    )
    assert compose(["sweep=other"]).sweep.name == "other"


def test_a_user_file_wins_over_a_shipped_one_of_the_same_name(user_folder):
    shipped = (CONF_DIR / "hardware" / "cpu.yaml").read_text().splitlines()
    mine = ["memory_gb: 3" if line.startswith("memory_gb:") else line for line in shipped]
    _write(user_folder / "conf" / "hardware" / "cpu.yaml", "\n".join(mine) + "\n")
    assert compose([]).hardware.memory_gb == 3
    assert compose_group("hardware", "cpu")["memory_gb"] == 3
    _write(user_folder / "sweeps" / "smoke.yaml", MY_SWEEP.format(name="smoke", description="mine"))
    cfg = compose(["sweep=smoke"])
    assert (cfg.sweep.description, cfg.model.name) == ("mine", "mine")


def test_sweep_file_by_path(user_folder):
    path = _write(
        user_folder / "some" / "dir" / "file.yaml", MY_SWEEP.format(name="by_path", description="p")
    )
    assert compose(["sweep=./some/dir/file.yaml"]).sweep.name == "by_path"
    assert compose([f"sweep={path}"]).sweep.name == "by_path"  # absolute
    yml = path.with_name("other.yml")
    yml.write_text(path.read_text())
    cfg = compose([f"sweep={yml.relative_to(user_folder)}", "train.max_steps=2"])
    assert (cfg.sweep.name, cfg.train.max_steps) == ("by_path", 2)  # the command line still wins


def test_missing_sweep_file_is_one_line(user_folder):
    with pytest.raises(ConfigError) as caught:
        compose(["sweep=./nowhere/file.yaml"])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("sweep=./nowhere/file.yaml: no such file")
    assert str(user_folder / "nowhere" / "file.yaml") in message


def test_error_in_a_user_file_names_the_file_not_a_temporary_link(user_folder):
    _write(user_folder / "sweeps" / "broken.yaml", "# @package _global_\nsweep: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        compose(["sweep=broken"])
    message = str(caught.value)
    assert message.startswith(f"{user_folder / 'sweeps' / 'broken.yaml'}:3: not valid YAML")
    assert "ftsweep-conf-" not in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"model=nosuch: no such model \(allowed: .*mine"):
        compose(["model=nosuch"])


def test_validate_runs_a_user_sweep(user_folder):
    out = subprocess.run(
        [sys.executable, "-m", "ftsweep.cli", "validate", "sweep=mine"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "total: 2 trials" in out.stdout
    assert "lora r2 a4" in out.stdout and "lora r4 a8" in out.stdout


def test_pyproject_lists_every_package():
    """The packages are listed by hand (the configs are mapped into the package), so a new
    subpackage must be added to pyproject.toml or the wheel would lack it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    on_disk = {
        ".".join(folder.relative_to(PROJECT_ROOT).parts)
        for folder in (PROJECT_ROOT / "ftsweep").rglob("*")
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
    } | {"ftsweep"}
    assert set(listed) == on_disk | {"ftsweep._configs.conf", "ftsweep._configs.sweeps"}


def test_source_checkout_reads_the_top_level_folders():
    assert CONF_DIR == PROJECT_ROOT / "conf"
    assert SWEEPS_DIR == PROJECT_ROOT / "sweeps"


# --- an installed wheel --------------------------------------------------------------------


def _copy_source(dest: Path) -> None:
    """What the wheel is built from, without touching the checkout (a build writes build/)."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    dest.mkdir()
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", dest)
    for folder in ("ftsweep", "conf", "sweeps"):
        shutil.copytree(PROJECT_ROOT / folder, dest / folder, symlinks=True, ignore=ignore)


@pytest.mark.slow
def test_installed_wheel_carries_the_shipped_configs(tmp_path):
    import sysconfig
    import zipfile

    src, dist, site, elsewhere = (tmp_path / p for p in ("src", "dist", "site", "elsewhere"))
    _copy_source(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(dist),
            str(src),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("ftsweep-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "ftsweep/_configs/conf/config.yaml",
        "ftsweep/_configs/conf/model/tiny-llama.yaml",
        "ftsweep/_configs/conf/deepspeed/zero2.yaml",
        "ftsweep/_configs/sweeps/smoke.yaml",
    ):
        assert expected in names
    assert not [n for n in names if n.startswith("ftsweep/_configs/conf/sweep/")]  # once only

    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
    )
    # A bare interpreter: the wheel first, then the main venv's packages on PYTHONPATH, whose
    # .pth files (the editable install's path hook to the checkout) are not run from there.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    main_site = sysconfig.get_paths()["purelib"]
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), main_site])
    checkout = str(PROJECT_ROOT.resolve())
    source = str(PROJECT_ROOT.resolve() / "ftsweep") + os.sep  # the checkout's own package
    probe = f"""
import sys
from ftsweep.config import CONF_DIR, SWEEPS_DIR, compose
import ftsweep
assert ftsweep.__file__.startswith({str(site)!r}), ftsweep.__file__
assert str(CONF_DIR).startswith({str(site)!r}) and str(SWEEPS_DIR).startswith({str(site)!r})
cfg = compose(["sweep=smoke"])
assert (cfg.sweep.name, cfg.model.name) == ("smoke", "tiny-llama"), cfg
import os
assert {checkout!r} not in [os.path.realpath(p or ".") for p in sys.path], sys.path
assert not [f for f in sys.meta_path if "editable" in repr(f).lower()], sys.meta_path
inside = [m for m, mod in list(sys.modules.items())
          if (getattr(mod, "__file__", None) or "").startswith({source!r})]
assert not inside, inside
print("ok")
"""
    out = subprocess.run(
        [str(python), "-c", probe],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    out = subprocess.run(
        [str(python), "-m", "ftsweep.cli", "validate", "sweep=lora_vs_full"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "total: 9 trials" in out.stdout
    assert (
        len([line for line in out.stdout.splitlines() if line.split()[-1:] == ["ok"]]) == 9
    )  # the default sweep's trials
