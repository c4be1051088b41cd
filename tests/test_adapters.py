"""Adapters: listed from MLflow with size and quality; merged into a plain checkpoint that
gives the same logits as base + adapter."""

from __future__ import annotations

import pytest
import torch

from ftsweep.adapters.listing import format_adapters_table, list_adapters
from ftsweep.adapters.merge import merge_adapter
from ftsweep.config import ConfigError
from ftsweep.models.builtin import resolve_model_path
from ftsweep.tracking.store import get_client

PROMPT = "Order 42: three red chairs to Oslo."


def _logits(model, tokenizer):
    batch = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def _adapter_and_merged_logits(uri, run_id, merged_dir, tmp_path):
    """Logits of base + the run's adapter (peft, unmerged), of the merged checkpoint, and of the base."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path = resolve_model_path("builtin:tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    base_logits = _logits(base, tokenizer)
    adapter_dir = get_client(uri).download_artifacts(run_id, "adapter", str(tmp_path))
    adapter_logits = _logits(PeftModel.from_pretrained(base, adapter_dir).eval(), tokenizer)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)  # plain transformers, no peft
    assert not hasattr(merged, "peft_config")
    return adapter_logits, _logits(merged.eval(), tokenizer), base_logits


def test_list_adapters_shows_lora_type_runs_with_size_and_quality(fake_store):
    uri, ids = fake_store
    adapters = list_adapters(uri, "fake")
    # Six finished LoRA/QLoRA runs logged adapters; full runs and the failed run did not.
    assert {a["run_id"] for a in adapters} == {ids[i] for i in (2, 3, 4, 5, 6, 7)}
    assert [a["quality"] for a in adapters] == sorted(
        (a["quality"] for a in adapters), reverse=True
    )
    by_id = {a["run_id"]: a for a in adapters}
    assert by_id[ids[7]]["method"] == "qlora"
    assert (by_id[ids[2]]["lora_r"], by_id[ids[2]]["target_modules"]) == (8, "all-linear")
    client = get_client(uri)
    for adapter in adapters:
        files = client.list_artifacts(adapter["run_id"], "adapter")
        assert adapter["size_mb"] == pytest.approx(sum(f.file_size for f in files) / 1e6)
        assert adapter["size_mb"] > 0.01
    assert (
        by_id[ids[4]]["size_mb"] > by_id[ids[6]]["size_mb"]
    )  # r=16 on all layers > r=4 on attention
    assert [a["run_id"] for a in adapters if a["recommended"]] == [ids[3]]


def test_adapters_table_names_each_run_and_marks_the_default(fake_store):
    uri, ids = fake_store
    table = format_adapters_table(list_adapters(uri, "fake"))
    lines = table.splitlines()
    assert lines[0].split() == [
        "run",
        "id",
        "run",
        "method",
        "r",
        "alpha",
        "targets",
        "lr",
        "seed",
        "quality",
        "size",
        "status",
    ]
    marked = [line for line in lines if line.startswith("*")]
    assert len(marked) == 2 and ids[3][:12] in marked[0]  # the run, then the footnote
    assert all(ids[i][:12] in table for i in (2, 4, 5, 6, 7))
    assert ids[0][:12] not in table
    assert "0.835" in table and "qlora" in table
    assert format_adapters_table([]).startswith("no adapters")


def test_merge_default_is_the_recommended_run_and_keeps_its_logits(fake_store, tmp_path):
    from transformers import AutoTokenizer

    uri, ids = fake_store
    out = merge_adapter(uri, "fake", None, tmp_path / "merged")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "adapter_config.json").exists()
    AutoTokenizer.from_pretrained(out)
    adapter, merged, base = _adapter_and_merged_logits(uri, ids[3], out, tmp_path / "download")
    torch.testing.assert_close(merged, adapter, atol=1e-4, rtol=1e-4)
    # The adapter really changes the model, so equality above is not base == base.
    assert (adapter - base).abs().max() > 1e-2


def test_merge_a_chosen_qlora_run_by_id_prefix(fake_store, tmp_path):
    uri, ids = fake_store
    out = merge_adapter(uri, "fake", ids[7][:10], tmp_path / "merged")
    adapter, merged, _ = _adapter_and_merged_logits(uri, ids[7], out, tmp_path / "download")
    torch.testing.assert_close(merged, adapter, atol=1e-4, rtol=1e-4)


def test_merge_errors_name_the_value_and_what_exists(fake_store, tmp_path):
    uri, ids = fake_store
    with pytest.raises(
        ConfigError,
        match=r"run=ffff0000 is no run of sweep 'fake' \(adapter runs: .*" + ids[2][:12],
    ):
        merge_adapter(uri, "fake", "ffff0000", tmp_path / "a")
    with pytest.raises(
        ConfigError, match=rf"run={ids[0]} is a full fine-tuning run: it has no adapter"
    ):
        merge_adapter(uri, "fake", ids[0], tmp_path / "b")
    with pytest.raises(ConfigError, match="logged no adapter"):
        merge_adapter(uri, "fake", ids[8], tmp_path / "c")  # the failed LoRA run
    with pytest.raises(ConfigError, match="no sweep named 'nope'"):
        merge_adapter(uri, "nope", None, tmp_path / "d")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"out=.*busy is not empty"):
        merge_adapter(uri, "fake", None, busy)
    with pytest.raises(
        ConfigError, match="sweep 'fake-full' has no finished LoRA or QLoRA run to merge"
    ):
        merge_adapter(uri, "fake-full", None, tmp_path / "e")
    assert not any((tmp_path / name).exists() for name in "abcde")


@pytest.mark.slow
def test_merge_a_trained_adapter_loads_with_plain_transformers(trial_store, tmp_path):
    uri, _ = trial_store
    adapters = list_adapters(uri, "tiny")
    assert {a["method"] for a in adapters} == {"lora", "qlora"} and len(adapters) == 4
    trained = next(a for a in adapters if a["lora_r"] == 8 and a["method"] == "lora")
    out = merge_adapter(uri, "tiny", trained["run_id"], tmp_path / "merged")
    adapter, merged, base = _adapter_and_merged_logits(
        uri, trained["run_id"], out, tmp_path / "download"
    )
    torch.testing.assert_close(merged, adapter, atol=1e-4, rtol=1e-4)
    assert (adapter - base).abs().max() > 1e-4  # training moved the adapter off its zero init


def _metric_histories(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    metrics = client.get_run(run_id).data.metrics
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in metrics
    }


def _recorded_qlora_run(cfg, adapter_dir) -> str:
    """A QLoRA run recorded as a trial records one (its params, test metrics, an adapter with
    random B matrices), without the minute a real trial takes here."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftsweep.tracking.record import TrialRun

    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg.model.name_or_path))
    targets = cfg.method.target_names
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    model.save_pretrained(adapter_dir)
    run = TrialRun(cfg, "qlora-to-merge", "qlora r4", "test")
    test = {"test_quality": 0.25, "test_quality_ci_low": 0.0, "test_quality_ci_high": 0.75}
    run.log_metrics({"quality": 0.5, "eval_loss": 9.0, **test}, step=cfg.train.max_steps)
    run.log_artifacts(adapter_dir, "adapter")
    run.finish("FINISHED", "completed")
    return run.run_id


def _merge_and_check_the_record(uri, run_id, merge_args, out, capsys) -> None:
    """`ftsweep merge` of a QLoRA run prints and records the merged model's test quality and
    leaves every metric the run had as it was."""
    from ftsweep import cli

    client = get_client(uri)
    before = _metric_histories(client, run_id)
    capsys.readouterr()
    assert cli.main(["merge", *merge_args, f"run={run_id}", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    after = _metric_histories(client, run_id)
    merged = {k: v for k, v in after.items() if k.startswith("merged_")}
    assert set(merged) == {
        "merged_test_quality",
        "merged_test_quality_ci_low",
        "merged_test_quality_ci_high",
    }
    assert {k: v for k, v in after.items() if k not in merged} == before
    quality, low, high = (
        merged[f"merged_test_quality{suffix}"][0][1] for suffix in ("", "_ci_low", "_ci_high")
    )
    assert 0 <= low <= quality <= high <= 1
    assert "4-bit base" in printed and "unquantised base" in printed
    adapter = [before[f"test_quality{s}"][-1][1] for s in ("", "_ci_low", "_ci_high")]
    assert "test_quality {:.3f} [95% CI {:.3f}, {:.3f}]".format(*adapter) in printed
    assert f"merged_test_quality {quality:.3f} [95% CI {low:.3f}, {high:.3f}]" in printed


def test_merging_a_qlora_run_scores_and_records_the_merged_model(
    tiny_overrides, tmp_path, capsys, monkeypatch
):
    """Its adapter was scored on the 4-bit base: the merged (unquantised) model is scored again
    on the test split rebuilt from the run's params, printed beside the adapter's, recorded."""
    from ftsweep.config import compose
    from ftsweep.data import evaluate
    from ftsweep.data.tasks import example_id
    from ftsweep.tracking.store import tracking_uri
    from ftsweep.trial.recipe import prepare_inputs

    cfg = compose([*tiny_overrides, "method=qlora", "method.lora_r=4", "method.lora_alpha=8"])
    run_id = _recorded_qlora_run(cfg, tmp_path / "adapter")
    scored = []
    score_examples = evaluate.score_examples

    def spy(model, tokenizer, task, examples, batch_size, max_new_tokens):
        scored.append((model, [example_id(e) for e in examples], batch_size, max_new_tokens))
        return score_examples(model, tokenizer, task, examples, batch_size, max_new_tokens)

    monkeypatch.setattr(evaluate, "score_examples", spy)
    # The merge command's own settings differ from the run's: its params rebuild its inputs.
    merge_args = [f"results_dir={cfg.results_dir}", "model=smollm2-135m", "data.num_test=2"]
    _merge_and_check_the_record(tracking_uri(cfg), run_id, merge_args, tmp_path / "merged", capsys)
    ((model, ids, batch_size, max_new_tokens),) = scored
    assert ids == [example_id(e) for e in prepare_inputs(cfg).test_examples]
    assert (batch_size, max_new_tokens) == (cfg.train.eval_batch_size, 8)
    assert not hasattr(model, "peft_config")  # the merged model, not base + adapter
    assert not any(p.dtype == torch.uint8 for p in model.parameters())  # nor a 4-bit base


@pytest.mark.slow
def test_merging_a_trained_qlora_run_records_the_merged_quality(trial_store, tmp_path, capsys):
    uri, root = trial_store
    (qlora,) = [a for a in list_adapters(uri, "tiny") if a["method"] == "qlora"]
    merge_args = [f"results_dir={root}", "sweep.name=tiny"]
    _merge_and_check_the_record(uri, qlora["run_id"], merge_args, tmp_path / "merged", capsys)


def test_merging_a_lora_run_scores_nothing_again(fake_store, tmp_path, capsys):
    from pathlib import Path

    from ftsweep import cli

    uri, ids = fake_store
    root = Path(uri.removeprefix("sqlite:///")).parent
    args = ["merge", f"results_dir={root}", "sweep.name=fake", f"run={ids[3]}"]
    assert cli.main([*args, f"out={tmp_path / 'merged'}"]) == 0
    printed = capsys.readouterr().out
    assert "merged checkpoint" in printed and "merged_test_quality" not in printed
    assert "merged_test_quality" not in get_client(uri).get_run(ids[3]).data.metrics


def test_a_qlora_run_whose_inputs_cannot_be_rebuilt_is_refused_before_merging(
    fake_store, tmp_path, capsys
):
    from pathlib import Path

    from ftsweep import cli

    uri, ids = fake_store
    root = Path(uri.removeprefix("sqlite:///")).parent
    out = tmp_path / "merged"
    # The hand-made QLoRA run records no data.task: its test split is unknown.
    args = ["merge", f"results_dir={root}", "sweep.name=fake", f"run={ids[7]}", f"out={out}"]
    assert cli.main(args) == 2
    assert "do not rebuild its inputs" in capsys.readouterr().err
    assert not out.exists()
