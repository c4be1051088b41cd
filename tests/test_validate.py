"""`ftsweep validate sweep=NAME`: every trial a sweep would run, with the plan's memory and
cost, checked before launch; no Ray, no weights."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ftsweep import cli
from ftsweep.config import compose
from ftsweep.sweep.space import expand


def _validate(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _trial_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.split()[-1:] in (["ok"], ["FIT"])]


def test_grid_sweep_lists_every_trial_with_memory_and_cost(capsys):
    code, out, err = _validate(capsys, "sweep=lora_vs_full")
    assert code == 0, err
    lines = _trial_lines(out)
    specs = expand(compose(["sweep=lora_vs_full"]))
    assert len(lines) == len(specs) == 9
    for line, spec in zip(lines, specs, strict=True):
        assert line.startswith(spec.trial_id)
        assert spec.config.method.name in line and spec.run_name in line
        assert "GB" not in line and "$" in line  # numbers, not units, in the columns
        # `auto` checkpoints: a full save outweighs a 40-step CPU trial's risk, an adapter's not
        assert ("none" if spec.config.method.name == "full" else "every ") in line
    assert "total: 9 trials, est $" in out
    assert "0 cannot fit" in out


def test_cost_is_the_trials_tokens_at_the_plans_speed(capsys):
    from ftsweep.planning.cost import run_cost_usd
    from ftsweep.planning.plan import estimate_trial

    code, out, _ = _validate(capsys, "sweep=smoke", "train.max_steps=500", "train.grad_accum=2")
    assert code == 0
    cfg = compose(["sweep=smoke", "train.max_steps=500", "train.grad_accum=2"])
    lines = _trial_lines(out)
    for spec, line in zip(expand(cfg), lines, strict=True):
        t = spec.config.train
        option = estimate_trial(spec.config)
        seconds = t.max_steps * t.batch_size * t.grad_accum * t.seq_len / option.est_tokens_per_s
        assert f"${run_cost_usd(seconds, spec.config.hardware):.6f}" in line
        assert f"{option.est_peak_gb_per_gpu:.2f}" in line


def test_random_and_optuna_sweeps_list_their_sub_spaces(capsys):
    code, out, err = _validate(
        capsys, "sweep=lr_scan", "sweep.algorithm=optuna", "sweep.num_samples=12"
    )
    assert code == 0, err
    assert "12 trials drawn at run time by optuna from 2 sub-spaces" in out
    ladder = "{1e-05, 3e-05, 0.0001, 0.0003, 0.001, 0.003}"
    assert f"full: learning_rate in {ladder}, zero_stage=2" in out
    assert f"lora: learning_rate in {ladder}, lora_r=16" in out
    assert "total: 12 trials (at most $" in out
    code, out, _ = _validate(
        capsys, "sweep=lr_scan", "sweep.algorithm=random", "sweep.num_samples=3"
    )
    assert code == 0 and "3 trials drawn at run time by random" in out


def test_a_trial_that_cannot_fit_fails_validation_unless_forced(capsys):
    # On a 20 GB machine: full fine-tuning and LoRA at each of three rates cannot fit; QLoRA's
    # 4-bit base (17.6 GB estimated) fits.
    code, out, err = _validate(
        capsys, "sweep=lora_vs_full", "model=llama-2-7b", "hardware.memory_gb=20"
    )
    assert code == 2
    assert [line.split()[-2:] for line in _trial_lines(out)].count(["CANNOT", "FIT"]) == 6
    (line,) = err.splitlines()
    assert line.startswith(
        "ftsweep: config error: 6 of 9 trials cannot fit; full zero2 lr1e-04 s0:"
    )
    assert "sweep.force=true launches it anyway" in line

    code, out, err = _validate(
        capsys,
        "sweep=lora_vs_full",
        "model=llama-2-7b",
        "hardware.memory_gb=20",
        "sweep.force=true",
    )
    assert code == 0, err
    assert "6 cannot fit (launched anyway: sweep.force=true)" in out


def test_unknown_architecture_is_a_question_mark(capsys):
    code, out, err = _validate(capsys, "sweep=smoke", "model.architecture=null")
    assert code == 0, err
    for line in _trial_lines(out):
        # nothing to size memory, cost or a checkpoint interval by
        assert line.split()[-4:] == ["?", "?", "none", "ok"]
    assert "(+? where the model has no architecture numbers)" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["sweep=nosuch"], "sweep=nosuch: no such sweep (allowed: "),
        ([], "sweep.space is empty"),
        (
            ["sweep=lr_scan", "sweep.scheduler=asha", "train.eval_every=null"],
            "sweep.scheduler=asha needs train.eval_every",
        ),
        (["sweep=smoke", "method.lora_r=0"], "method.lora_r=0"),
        (["sweep=lora_vs_full", "train.seq_len=8"], "train.seq_len=8"),
    ],
)
def test_a_bad_sweep_is_one_config_error_line(capsys, args, fragment):
    code, _, err = _validate(capsys, *args)
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("ftsweep: config error: ") and fragment in line


def test_validate_imports_neither_ray_nor_torch():
    code = (
        "import sys; from ftsweep.cli import main; rc = main(['validate', 'sweep=lora_vs_full']); "
        "print(rc, sorted(m for m in ('ray', 'torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "0 []"
    assert "total: 9 trials" in out.stdout
