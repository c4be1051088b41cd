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
    for command in ("train", "sweep", "validate", "prepare"):
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


def test_plan_for_7b_writes_plan_json(tmp_path):
    import json

    out = _ftsweep("plan", "model=llama-2-7b", f"results_dir={tmp_path}", "max_gpus=4")
    assert out.returncode == 0, out.stderr
    assert "lora" in out.stdout and "qlora" in out.stdout
    options = json.loads((tmp_path / "plan.json").read_text())
    keys = {"method", "gpu", "num_gpus", "est_peak_gb_per_gpu", "est_hours", "est_cost_usd", "fits"}
    assert all(keys <= set(o) for o in options)
    assert max(o["num_gpus"] for o in options) <= 4

    def single_gpu_peak(method):
        # One GPU, no ZeRO sharding and no offload.
        return min(
            o["est_peak_gb_per_gpu"]
            for o in options
            if o["method"] == method
            and o["num_gpus"] == 1
            and o["gpu"] == "h100"
            and not o.get("zero_stage")
            and not o.get("offload")
        )

    assert single_gpu_peak("full") > 80 > single_gpu_peak("lora") > single_gpu_peak("qlora")
    assert any(o["method"] == "qlora" and o["gpu"] == "t4" and o["fits"] for o in options)


def test_plan_naming_a_method_narrows_it(tmp_path):
    import json

    out = _ftsweep(
        "plan", "model=mistral-7b", "method=qlora", "hardware=t4", f"results_dir={tmp_path}"
    )
    assert out.returncode == 0, out.stderr
    options = json.loads((tmp_path / "plan.json").read_text())
    assert {(o["method"], o["gpu"]) for o in options} == {("qlora", "t4")}


# --- every error is one line ------------------------------------------------------------


def _boom(exc: BaseException):
    def handler(overrides, extra):
        raise exc

    return handler


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("store at postgresql://mlflow:hunter2@db:5432/mlflow refused\nsecond line"),
        UnboundLocalError("cannot access local variable 'number'"),
    ],
)
def test_any_other_error_is_one_redacted_line(monkeypatch, capsys, exc):
    from ftsweep import cli

    monkeypatch.delenv("FTSWEEP_DEBUG", raising=False)
    monkeypatch.setattr(cli, "cmd_plan", _boom(exc))
    assert cli.main(["plan"]) == 1
    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    first = str(exc).splitlines()[0].replace("hunter2", "***")
    assert line == f"ftsweep: error: {type(exc).__name__}: {first} (FTSWEEP_DEBUG=1 shows where)"
    assert "hunter2" not in out + err and "Traceback" not in out + err


def test_ftsweep_debug_shows_the_traceback(monkeypatch, capsys):
    from ftsweep import cli

    monkeypatch.setenv("FTSWEEP_DEBUG", "1")
    monkeypatch.setattr(cli, "cmd_plan", _boom(KeyError("x")))
    assert cli.main(["plan"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "ftsweep: error: KeyError: 'x'"


def _refused_before_any_run(tmp_path, *args: str) -> str:
    results = tmp_path / "results"
    out = _ftsweep("train", f"results_dir={results}", *args)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "training" not in out.stdout  # refused before the trial starts
    assert not results.exists()  # no store, no run
    (line,) = out.stderr.splitlines()
    assert line.startswith("ftsweep: config error: ")
    return line.removeprefix("ftsweep: config error: ")


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("ftp://user:secret@x/store", "MLflow cannot use scheme ftp:// here"),
        ("nonsense", "not a URI with a scheme"),
    ],
)
def test_tracking_uri_is_refused_before_any_run(tmp_path, uri, problem):
    message = _refused_before_any_run(tmp_path, f"tracking.uri={uri}")
    shown = uri.replace("secret", "***")
    assert message.startswith(f"tracking.uri={shown!r}: {problem} (allowed here: sqlite://, ")
    assert "http://" in message and "secret" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "data.path={path}: no such file or folder"),
        (b'{"prompt": "caf\xe9", "completion": "x"}\n', "{path}:1: not UTF-8 text (byte 15: "),
        (b'{"prompt": "a", "completion": "b"}\n{nope\n', "{path}:2: not valid JSON ("),
    ],
    ids=["missing", "not-utf8", "not-jsonl"],
)
def test_unreadable_data_is_refused_before_any_run(tmp_path, content, expected):
    path = tmp_path / "mine.jsonl"
    if content is not None:
        path.write_bytes(content)
    message = _refused_before_any_run(tmp_path, "data=jsonl", f"data.path={path}")
    assert message.startswith(expected.format(path=path))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train.lora_r=8"], "train.lora_r: unknown key (allowed under train: max_steps, "),
        (["method.zero_stage=2"], "method.zero_stage: not a knob of method lora (its knobs: "),
    ],
)
def test_a_knob_in_the_wrong_place_is_refused_before_any_run(tmp_path, args, message):
    assert _refused_before_any_run(tmp_path, *args).startswith(message)
