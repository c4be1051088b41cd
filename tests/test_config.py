"""Config composition and validation: every shipped config composes; bad values are named."""

from __future__ import annotations

import importlib.util

import pytest

from ftsweep.config import CONF_DIR, SWEEPS_DIR, ConfigError, compose
from ftsweep.sweep.space import expand


def test_default_config_is_lora_on_smollm2():
    cfg = compose([])
    assert cfg.model.name == "smollm2-135m"
    assert cfg.method.name == "lora"
    assert cfg.results_dir == "results"


@pytest.mark.parametrize("group", ["model", "method", "data", "hardware"])
def test_every_group_option_composes(group):
    options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
    assert options, f"conf/{group} is empty"
    for option in options:
        if (group, option) == ("data", "jsonl"):
            # User data has no default file: composing it alone names the missing key.
            with pytest.raises(ConfigError, match="data.path is required"):
                compose([f"{group}={option}"])
            continue
        cfg = compose([f"{group}={option}"])
        assert getattr(cfg, group).name


def _sampled_specs(cfg, n=8):
    """Draw from a random/optuna sweep's conditional space with a real Optuna study."""
    import optuna

    from ftsweep.sweep.space import define_by_run, spec_from_sample

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sample = define_by_run(cfg.sweep.space)
    specs = []
    for _ in range(n):
        trial = study.ask()
        fixed = sample(trial)
        specs.append(spec_from_sample(cfg, {**trial.params, **fixed}))
        study.tell(trial, 1.0)
    return specs


@pytest.mark.parametrize("sweep", sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")))
def test_every_sweep_composes_and_expands(sweep):
    from ftsweep.sweep.run import check_sweep

    cfg = compose([f"sweep={sweep}"])
    assert cfg.sweep.name == sweep
    specs = check_sweep(cfg) or _sampled_specs(cfg)
    assert specs, "a shipped sweep must ask for at least one trial"
    assert len({s.trial_id for s in specs}) == len(specs)
    for spec in specs:
        if spec.config.method.name == "full":
            assert not hasattr(spec.config.method, "lora_r")


def test_sweep_overrides_base_config():
    cfg = compose(["sweep=smoke"])
    assert cfg.model.name == "tiny-llama"
    assert cfg.train.max_steps == 8


def test_command_line_overrides_win_over_the_sweep():
    cfg = compose(["sweep=smoke", "train.max_steps=3"])
    assert cfg.train.max_steps == 3


def test_command_line_method_knobs_reach_every_trial_that_has_them():
    plain = {s.trial_id for s in expand(compose(["sweep=lora_vs_full"]))}
    cfg = compose(["sweep=lora_vs_full", "method.warmup_ratio=0.1", "method.lora_dropout=0.05"])
    specs = expand(cfg)
    assert {s.config.method.name for s in specs} == {"full", "lora", "qlora"}
    for spec in specs:
        assert spec.config.method.warmup_ratio == 0.1
        # a knob only LoRA methods have stays off full fine-tuning
        expected_dropout = None if spec.config.method.name == "full" else 0.05
        assert getattr(spec.config.method, "lora_dropout", None) == expected_dropout
    assert not plain & {s.trial_id for s in specs}  # a different config is a different trial

    # the space's own value wins over the command line's
    ranked = expand(compose(["sweep=rank_scan", "method.lora_r=4"]))
    assert {s.config.method.lora_r for s in ranked if s.config.method.is_adapter} == {4, 8, 32}

    # searchers' samples get them too
    sampled = _sampled_specs(compose(["sweep=lr_scan", "method.warmup_ratio=0.2"]), n=3)
    assert [s.config.method.warmup_ratio for s in sampled] == [0.2] * 3


def test_alpha_tied_to_rank():
    cfg = compose(["sweep=lora_vs_full"])
    for spec in expand(cfg):
        if spec.config.method.is_adapter:
            assert spec.config.method.lora_alpha == 2 * spec.config.method.lora_r


def test_trial_ids_are_stable_and_distinct():
    first = [s.trial_id for s in expand(compose(["sweep=lora_vs_full"]))]
    again = [s.trial_id for s in expand(compose(["sweep=lora_vs_full"]))]
    assert first == again
    other_seed = [s.trial_id for s in expand(compose(["sweep=lora_vs_full", "train.seed=1"]))]
    assert not set(first) & set(other_seed)


BAD_INPUTS = [
    (["method=lorra"], ["method=lorra", "full", "lora", "qlora"]),
    (["model=gpt-17"], ["model=gpt-17", "smollm2-135m"]),
    (["sweep=nosuch"], ["sweep=nosuch", "smoke"]),
    (["method.learning_rate=-1"], ["method.learning_rate", "-1", "greater than 0"]),
    (["method.learning_rate=abc"], ["method.learning_rate", "abc"]),
    (["method.lerning_rate=1e-3"], ["method.lerning_rate", "unknown key", "learning_rate"]),
    (["method.lora_r=0"], ["method.lora_r", "0", "greater than or equal to 1"]),
    (["method.target_modules=attn"], ["method.target_modules", "attn", "attention", "all-linear"]),
    (["method.target_modules=[]"], ["method.target_modules", "empty"]),
    (["method=full", "method.zero_stage=1"], ["method.zero_stage", "1", "0", "2", "3"]),
    (["train.max_steps=0"], ["train.max_steps", "0"]),
    (["train.batch_size=two"], ["train.batch_size", "two"]),
    (["train.seq_len=8"], ["train.seq_len", "8", "16"]),
    (["train.precision=fp8"], ["train.precision", "fp8", "bf16"]),
    (["hardware.price_per_device_hour=-2"], ["hardware.price_per_device_hour", "-2"]),
    (["+train.epochs=3"], ["train.epochs", "unknown key"]),
]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    BAD_INPUTS,
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_values_name_key_value_and_what_is_allowed(overrides, expected):
    with pytest.raises(ConfigError) as caught:
        compose(overrides)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_lora_knobs_required_for_lora():
    with pytest.raises(ConfigError, match="lora_r"):
        compose(["method=lora", "method.lora_r=null"])


def test_conditional_space_draws_knobs_only_for_their_method():
    cfg = compose(["sweep=lr_scan", "sweep.algorithm=optuna", "sweep.num_samples=20"])
    specs = _sampled_specs(cfg, n=20)
    methods = {s.config.method.name for s in specs}
    assert methods == {"full", "lora"}
    rates = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)  # the same ladder for both methods
    for spec in specs:
        assert spec.config.method.learning_rate in rates
        if spec.config.method.name == "full":
            assert not hasattr(spec.config.method, "lora_r")
        else:
            assert spec.config.method.lora_r == 16 and spec.config.method.lora_alpha == 32


def test_grid_refuses_ranges(tmp_path):
    ranged = tmp_path / "ranged.yaml"
    ranged.write_text(
        "# @package _global_\nsweep:\n  name: ranged\n  algorithm: grid\n  space:\n"
        "    - method: lora\n      params: {learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}}\n"
    )
    with pytest.raises(ConfigError, match="a range needs sweep.algorithm=random or optuna"):
        compose([f"sweep={ranged}"])


def test_asha_needs_intermediate_evaluation():
    from ftsweep.sweep.run import check_sweep

    with pytest.raises(ConfigError, match="train.eval_every"):
        check_sweep(compose(["sweep=lr_scan", "sweep.scheduler=asha", "train.eval_every=null"]))


def test_seeds_repeat_each_grid_point():
    specs = expand(compose(["sweep=alpha_scan", "sweep.seeds=3"]))
    assert len(specs) == 27  # 3 alpha ratios x 3 learning rates x 3 seeds
    assert sorted({s.config.train.seed for s in specs}) == [0, 1, 2]


# --- knobs in the wrong place: one line, exact wording ------------------------------------


def test_a_method_knob_under_train_names_what_train_allows():
    from ftsweep.config import TrainConfig

    with pytest.raises(ConfigError) as caught:
        compose(["train.lora_r=8"])
    allowed = ", ".join(TrainConfig.model_fields)
    assert str(caught.value) == f"train.lora_r: unknown key (allowed under train: {allowed})"


def test_a_knob_of_another_method_names_the_chosen_methods_knobs():
    from ftsweep.methods import get_method

    knobs = ", ".join(sorted(set(get_method("lora").knobs.model_fields) - {"name"}))
    with pytest.raises(ConfigError) as caught:
        compose(["method=lora", "method.zero_stage=2"])
    assert str(caught.value) == f"method.zero_stage: not a knob of method lora (its knobs: {knobs})"
    with pytest.raises(ConfigError, match=r"^method\.lora_r: not a knob of method full \(its"):
        compose(["method=full", "method.lora_r=8"])


# --- inputs checked at composition: the tracking store and the user's data ----------------


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("ftp://x", "MLflow cannot use scheme ftp:// here"),
        ("nonsense", "not a URI with a scheme"),
        ("http://", "no host after http://"),
        (
            "postgresql+psycopg2://u:secret@db/mlflow",
            "its database driver (psycopg2) is not installed",
        ),
    ],
)
def test_tracking_uri_mlflow_cannot_use_is_one_line(uri, problem):
    from ftsweep.config.inputs import usable_tracking_schemes
    from ftsweep.tracking.redact import redact_uri

    if "psycopg2" in uri and importlib.util.find_spec("psycopg2"):
        pytest.skip("psycopg2 is installed here")
    with pytest.raises(ConfigError) as caught:
        compose([f"tracking.uri={uri}"])
    message = str(caught.value)
    assert message.startswith(f"tracking.uri={redact_uri(uri)!r}: {problem}")
    assert "secret" not in message and "\n" not in message
    assert f"allowed here: {', '.join(s + '://' for s in usable_tracking_schemes())}" in message


@pytest.mark.parametrize(
    ("uri", "kept"),
    [
        ("sqlite:///results/mlflow.db", "sqlite:///results/mlflow.db"),
        ("http://localhost:5000", "http://localhost:5000"),
        # Credentials move to the environment (tests/test_security.py); the config keeps the rest.
        ("https://u:pw@mlflow.example.com", "https://mlflow.example.com"),
        ("file:///tmp/mlruns", "file:///tmp/mlruns"),
        ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://mlflow@db:5432/mlflow"),
    ],
)
def test_usable_tracking_uris_pass(uri, kept, monkeypatch):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert compose([f"tracking.uri={uri}"]).tracking.uri == kept


def test_tracking_schemes_are_ones_mlflow_registers():
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    from ftsweep.config.inputs import TRACKING_SCHEMES

    assert set(TRACKING_SCHEMES) <= set(_tracking_store_registry._registry)


def _jsonl(path, *lines: bytes):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


GOOD = b'{"prompt": "2+2?", "completion": "4"}'


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            [b'{"prompt": "caf\xe9", "completion": "x"}', GOOD],
            ":1: not UTF-8 text (byte 15: b'\\xe9')",
        ),
        (
            [GOOD, GOOD, b'{"prompt": "\xff", "completion": "x"}'],
            ":3: not UTF-8 text (byte 88: b'\\xff')",
        ),
        ([GOOD, b"{nope", GOOD], ":2: not valid JSON (Expecting property name"),
        ([b'{"question": "a"}', GOOD], ":1: cannot tell the data format (keys: question)"),
    ],
    ids=["utf8-first-line", "utf8-later-line", "json", "format"],
)
def test_unreadable_data_file_is_one_line_naming_file_and_line(tmp_path, lines, expected):
    path = _jsonl(tmp_path / "train.jsonl", *lines)
    with pytest.raises(ConfigError) as caught:
        compose(["data=jsonl", f"data.path={path}"])
    assert str(caught.value).startswith(f"{path}{expected}"), caught.value
    # a folder of split files is read the same way
    with pytest.raises(ConfigError) as caught:
        compose(["data=jsonl", f"data.path={tmp_path}"])
    assert str(caught.value).startswith(f"{path}{expected}"), caught.value


def test_missing_data_path_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as caught:
        compose(["data=jsonl", f"data.path={tmp_path / 'nope.jsonl'}"])
    assert str(caught.value) == f"data.path={tmp_path / 'nope.jsonl'}: no such file or folder"
    more = [b'{"prompt": "%d+%d?", "completion": "%d"}' % (n, n, 2 * n) for n in (3, 4)]
    # three examples: one to train on, one to validate, one to test
    train = _jsonl(tmp_path / "t.jsonl", GOOD, *more)
    with pytest.raises(ConfigError) as caught:
        compose(["data=jsonl", f"data.path={train}", f"data.eval_path={tmp_path / 'e.jsonl'}"])
    assert str(caught.value) == f"data.eval_path={tmp_path / 'e.jsonl'}: no such file or folder"


def test_readable_data_composes_and_reading_can_be_skipped(tmp_path):
    more = [b'{"prompt": "%d+%d?", "completion": "%d"}' % (n, n, 2 * n) for n in (3, 4)]
    # three examples: one to train on, one to validate, one to test
    train = _jsonl(tmp_path / "t.jsonl", GOOD, *more)
    assert compose(["data=jsonl", f"data.path={train}"]).data.path == str(train)
    missing = tmp_path / "gone.jsonl"
    cfg = compose(["data=jsonl", f"data.path={missing}"], check_data=False)
    assert cfg.data.path == str(missing)  # e.g. a report of runs whose data has since moved
