"""`ftsweep merge register=NAME`: the merged model logged with MLflow's transformers flavour,
registered with the run's numbers as tags, and served by `mlflow models serve`."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ftsweep.adapters.register import check_model_name, version_tags
from ftsweep.config import ConfigError
from ftsweep.report.runs import RunRow
from ftsweep.tracking.store import get_client

PROMPT = "Turn this into JSON: order 1234 for two blue mugs, shipped to Lyon."


def _row(**metrics) -> RunRow:
    return RunRow(
        run_id="a1b2c3d4e5f6",
        name="lora r8 a16 all-linear lr1e-04 s0",
        status="FINISHED",
        stop_reason="completed",
        params={
            "method": "lora",
            "lora_r": "8",
            "lora_alpha": "16.0",
            "learning_rate": "0.0001",
            "model": "tiny-llama",
            "data": "format",
            "seed": "0",
            "target_modules": "None",
        },
        metrics={
            "quality": 0.8,
            "test_quality": 0.75,
            "test_quality_ci_low": 0.5,
            "test_quality_ci_high": 0.9375,
            "cost_usd": 0.00021,
            "wall_time_s": 61.5,
            **metrics,
        },
        tags={"ftsweep.trial_id": "trial-7"},
    )


def test_version_tags_carry_the_runs_quality_cost_config_and_ids():
    assert version_tags(_row(), "smoke") == {
        "test_quality": "0.75",
        "test_quality_ci_low": "0.5",
        "test_quality_ci_high": "0.9375",
        "cost_usd": "0.00021",
        "wall_time_s": "61.5",
        "method": "lora",
        "lora_r": "8",
        "lora_alpha": "16.0",
        "learning_rate": "0.0001",
        "model": "tiny-llama",
        "data": "format",
        "ftsweep.source_run_id": "a1b2c3d4e5f6",
        "ftsweep.trial_id": "trial-7",
        "ftsweep.sweep": "smoke",
    }


def test_version_tags_add_the_merged_quality_and_leave_out_what_is_missing():
    merged = {
        "merged_test_quality": 0.6875,
        "merged_test_quality_ci_low": 0.4,
        "merged_test_quality_ci_high": 0.9,
    }
    recorded = version_tags(_row(merged_test_quality=0.5, cost_usd=math.nan), "smoke")
    assert recorded["merged_test_quality"] == "0.5"  # recorded by an earlier merge
    assert "cost_usd" not in recorded
    scored_now = version_tags(_row(merged_test_quality=0.5), "smoke", merged)
    assert (scored_now["merged_test_quality"], scored_now["merged_test_quality_ci_high"]) == (
        "0.6875",
        "0.9",
    )


@pytest.mark.parametrize("name", ["", "bad/name", "a:b", "../up", "-dash", "two words", "x..y"])
def test_a_name_that_is_no_registered_model_name_is_refused(name):
    with pytest.raises(ConfigError, match=rf"register={name}: not a registered model name"):
        check_model_name(name)


@pytest.mark.parametrize("name", ["smoke-winner", "llama_3.lora", "7b"])
def test_plain_names_are_registered_model_names(name):
    assert check_model_name(name) == name


def test_merge_refuses_a_bad_name_before_it_writes_anything(fake_store, tmp_path, capsys):
    from ftsweep import cli

    uri, ids = fake_store
    root = Path(uri.removeprefix("sqlite:///")).parent
    out = tmp_path / "merged"
    args = ["merge", f"results_dir={root}", "sweep.name=fake", f"out={out}", "register=a/b"]
    assert cli.main(args) == 2
    assert "register=a/b: not a registered model name" in capsys.readouterr().err
    assert not out.exists()


def _metric_histories(client, run_id: str) -> dict:
    metrics = client.get_run(run_id).data.metrics
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in metrics
    }


def _merge_and_register(uri, run_id, name, out, capsys) -> str:
    from ftsweep import cli

    root = Path(uri.removeprefix("sqlite:///")).parent
    args = ["merge", f"results_dir={root}", "sweep.name=fake", f"run={run_id}", f"out={out}"]
    capsys.readouterr()
    assert cli.main([*args, f"register={name}"]) == 0
    return capsys.readouterr().out


def test_registering_twice_makes_version_2_and_leaves_the_run_as_it_was(
    fake_store, tmp_path, capsys
):
    uri, ids = fake_store
    client = get_client(uri)
    run_id = ids[2]
    before = client.get_run(run_id)
    histories = _metric_histories(client, run_id)

    first = _merge_and_register(uri, run_id, "fake-winner", tmp_path / "one", capsys)
    assert "registered: models:/fake-winner/1 (version 1: a new registered model)" in first
    assert "mlflow models serve -m models:/fake-winner/1 --env-manager local" in first
    second = _merge_and_register(uri, run_id, "fake-winner", tmp_path / "two", capsys)
    assert (
        "registered: models:/fake-winner/2 (version 2: fake-winner already had version 1)" in second
    )

    version = client.get_model_version("fake-winner", "2")
    assert version.run_id == run_id
    assert version.tags["ftsweep.source_run_id"] == run_id
    assert version.tags["method"] == "lora" and version.tags["lora_r"] == "8"
    assert float(version.tags["cost_usd"]) == pytest.approx(before.data.metrics["cost_usd"])
    assert version.tags["ftsweep.trial_id"] == before.data.tags["ftsweep.trial_id"]
    # The run lists both models among its outputs; nothing else of it changed.
    after = client.get_run(run_id)
    sources = {client.get_model_version("fake-winner", v).source for v in ("1", "2")}
    assert {f"models:/{o.model_id}" for o in after.outputs.model_outputs} >= sources
    assert after.data.params == before.data.params
    assert (after.info.status, after.info.end_time) == (before.info.status, before.info.end_time)
    assert _metric_histories(client, run_id) == histories

    import mlflow.pyfunc

    from ftsweep.adapters.register import _tracking

    with _tracking(uri):
        served = mlflow.pyfunc.load_model("models:/fake-winner/2")
        meta = served.metadata
    assert meta.flavors["transformers"]["inference_task"] == "llm/v1/chat"
    assert meta.flavors["python_function"]["config"]["do_sample"] is False


# --- served over HTTP ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _wait_for_ping(server: subprocess.Popen, url: str, log: Path, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if server.poll() is not None:
            pytest.fail(
                f"mlflow models serve exited ({server.returncode}):\n{log.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    pytest.fail(
        f"mlflow models serve did not answer /ping in {timeout_s:.0f} s:\n{log.read_text()[-4000:]}"
    )


@pytest.mark.slow
def test_the_registered_merged_winner_serves_completions(trial_store, tmp_path, capsys):
    """merge + register a trained tiny LoRA run, then `mlflow models serve -m models:/NAME/1`
    on loopback answers a chat request with a completion."""
    from ftsweep import cli
    from ftsweep.adapters.listing import list_adapters

    uri, root = trial_store
    trained = next(
        a for a in list_adapters(uri, "tiny") if a["method"] == "lora" and a["lora_r"] == 8
    )
    args = ["merge", f"results_dir={root}", "sweep.name=tiny", f"run={trained['run_id']}"]
    assert cli.main([*args, f"out={tmp_path / 'merged'}", "register=tiny-winner"]) == 0
    assert "registered: models:/tiny-winner/1" in capsys.readouterr().out

    port = _free_port()
    log = tmp_path / "serve.log"
    env = os.environ | {
        "MLFLOW_TRACKING_URI": uri,
        # The server starts uvicorn by name: it must be on PATH, beside this Python.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/tiny-winner/1"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_ping(server, f"{base}/ping", log, timeout_s=180)
        reply = _post(
            f"{base}/invocations",
            {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16},
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    (choice,) = reply[0]["choices"] if isinstance(reply, list) else reply["choices"]
    completion = choice["message"]["content"]
    assert isinstance(completion, str) and completion.strip(), reply
