"""The command line: bad input is one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _ftsweep(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ftsweep.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_commands():
    out = _ftsweep("--help")
    assert out.returncode == 0
    for command in ("train", "sweep", "prepare"):
        assert command in out.stdout


def test_help_does_not_import_torch():
    code = "import sys; from ftsweep.cli import _parser; _parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "method=lorra"], "method=lorra: no such method (allowed: full, lora, qlora)"),
        (
            ["train", "method.learning_rate=-3"],
            "method.learning_rate=-3: Input should be greater than 0",
        ),
        (["sweep", "sweep=nosuch"], "sweep=nosuch: no such sweep"),
        (["sweep", "train.max_steps=0", "sweep=smoke"], "train.max_steps=0"),
        (["train", "method.lerning_rate=1"], "method.lerning_rate: unknown key"),
    ],
)
def test_bad_config_is_one_line_without_traceback(args, fragment):
    out = _ftsweep(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("ftsweep: config error")]
    assert len(errors) == 1, out.stderr
    assert fragment in errors[0]


def test_sweep_without_a_space_is_refused():
    out = _ftsweep("sweep")
    assert out.returncode == 2
    assert "sweep.space is empty" in out.stderr
