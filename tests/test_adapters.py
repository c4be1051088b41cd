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
