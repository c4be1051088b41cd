"""Security defaults: no remote code, safetensors only, loopback servers, no secrets shown."""

from __future__ import annotations

import io
import re

import pytest

from ftsweep.config import CONF_DIR, PROJECT_ROOT, compose
from ftsweep.tracking.record import TAG_ERROR
from ftsweep.tracking.redact import redact_uri
from ftsweep.tracking.store import get_client, tracking_uri

MODEL_CONFIGS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
SECRET = "s3cret-Pa55"


# --- remote code and weights ---------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_trust_remote_code_is_off_in_every_shipped_model(name):
    assert compose([f"model={name}"]).model.trust_remote_code is False


def _captured_from_pretrained(monkeypatch):
    from transformers import AutoModelForCausalLM

    calls = []

    def fake(path, **kwargs):
        calls.append(kwargs)
        return object()

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake)
    return calls


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_base_models_load_without_remote_code_from_safetensors_only(monkeypatch, method):
    from ftsweep.methods.loading import load_base_model

    calls = _captured_from_pretrained(monkeypatch)
    load_base_model(compose(["model=tiny-llama", f"method={method}"]), "some/model")
    (kwargs,) = calls
    assert kwargs["trust_remote_code"] is False
    assert kwargs["use_safetensors"] is True


def test_remote_code_only_when_the_config_says_so(monkeypatch):
    from ftsweep.methods.loading import load_base_model

    calls = _captured_from_pretrained(monkeypatch)
    load_base_model(compose(["model=tiny-llama", "model.trust_remote_code=true"]), "some/model")
    assert calls[0]["trust_remote_code"] is True


def test_a_pickled_checkpoint_is_refused(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftsweep.methods.loading import load_base_model

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)  # config.json + model.safetensors
    weights = tmp_path / "model.safetensors"
    state = {k: v.clone() for k, v in LlamaForCausalLM(config).state_dict().items()}
    weights.unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")  # the same weights, pickled
    with pytest.raises(OSError, match="safetensors"):
        load_base_model(compose(["model=tiny-llama", "method=full"]), str(tmp_path))


# Anything that unpickles weights without weights_only=True, or turns remote code on in code.
UNSAFE = [
    (
        re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"),
        "torch.load without weights_only=True",
    ),
    (re.compile(r"trust_remote_code\s*=\s*True"), "trust_remote_code=True in code"),
    (re.compile(r"weights_only\s*=\s*False"), "weights_only=False"),
    (re.compile(r"use_safetensors\s*=\s*(False|None)"), "use_safetensors not required"),
]


def test_no_unsafe_loading_in_the_code():
    found = []
    for path in sorted((PROJECT_ROOT / "ftsweep").rglob("*.py")):
        text = path.read_text()
        for pattern, what in UNSAFE:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{line}: {what}")
    assert not found, "\n".join(found)


def test_mlflow_has_no_known_artifact_path_traversal_advisories():
    import mlflow
    from packaging.version import Version

    assert Version(mlflow.__version__) >= Version("3.10")


# --- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (
            "postgresql://mlflow:pw@db:5432/mlflow",
            "postgresql://mlflow:***@db:5432/mlflow",
        ),
        ("https://ghp_abc123@mlflow.example.com", "https://***@mlflow.example.com"),
        ("http://host:5000/?token=abc&x=1", "http://host:5000/?token=***&x=1"),
        (
            "s3://b/k?X-Amz-Signature=dead&X-Amz-Credential=AKIA",
            "s3://b/k?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("sqlite:////tmp/results/mlflow.db", "sqlite:////tmp/results/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        (
            "API request to http://alice:pw@h:5000/api failed",
            "API request to http://alice:***@h:5000/api failed",
        ),
    ],
)
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown


def test_secrets_in_a_failure_are_not_recorded(tiny_config, monkeypatch):
    import ftsweep.trial.recipe as trial

    def unreachable(*args, **kwargs):
        raise ConnectionError(
            f"API request to http://alice:{SECRET}@10.0.0.5:5000/api/2.0/mlflow/runs/log-batch "
            f"failed (also tried https://tracker/?token={SECRET})"
        )

    monkeypatch.setattr(trial, "train_and_evaluate", unreachable)
    cfg = tiny_config("sweep.name=secret")
    from ftsweep.trial.run import run_trial

    with pytest.raises(ConnectionError):
        run_trial(cfg)
    client = get_client(tracking_uri(cfg))
    (run,) = client.search_runs([client.get_experiment_by_name("secret").experiment_id])
    assert "alice:***@10.0.0.5" in run.data.tags[TAG_ERROR]
    assert SECRET not in repr(run.data.params) + repr(run.data.tags)


def test_sweep_summary_does_not_print_a_password(tiny_config, monkeypatch):
    from rich.console import Console

    import ftsweep.sweep.summary as summary
    from ftsweep.sweep.run import SweepOutcome

    monkeypatch.setattr(summary, "finished_runs_by_trial", lambda uri, experiment: {})
    monkeypatch.setattr(summary, "_unfinished_runs", lambda outcome: [])
    uri = f"http://alice:{SECRET}@tracker:5000"
    outcome = SweepOutcome(
        experiment="x",
        tracking_uri=uri,
        trials=[],
        results={},
        errors={"lora-1": f"MlflowException: API request to {uri}/api failed"},
        interrupted=False,
    )
    out = io.StringIO()
    summary.print_summary(Console(file=out, width=200), tiny_config(), outcome)
    text = out.getvalue()
    assert "http://alice:***@tracker:5000" in text
    assert SECRET not in text


# --- servers -------------------------------------------------------------------------------------


def test_tracking_server_binds_to_loopback_and_keeps_the_password_off_its_command_line(
    monkeypatch, tmp_path
):
    import ftsweep.ops.server as server

    started = {}

    class FakePopen:
        pid = 0

        def __init__(self, cmd, env=None, **kwargs):
            started.update(cmd=cmd, env=env)

    monkeypatch.setattr(server.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(server, "wait_until_ready", lambda *args, **kwargs: None)
    backend = f"postgresql://ftsweep:{SECRET}@127.0.0.1:5433/mlflow"
    server.start_tracking_server(backend, tmp_path / "artifacts", port=5555)
    cmd = started["cmd"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")
    assert SECRET not in " ".join(cmd)
    assert started["env"]["MLFLOW_BACKEND_STORE_URI"] == backend
    assert server._parser().parse_args([]).host == "127.0.0.1"


def test_make_ui_binds_to_loopback():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    for line in makefile.splitlines():
        if re.search(r"mlflow (ui|server)|ftsweep\.server", line):
            assert "0.0.0.0" not in line, line
