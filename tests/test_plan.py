"""The plan before launch: memory, hours and dollars from config numbers, calibrated by runs."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ftsweep.config import ConfigError, compose, validate
from ftsweep.methods import get_method
from ftsweep.planning.cost import collective_bytes_per_step, cost_usd, hardware_catalog
from ftsweep.planning.fit import calibrate
from ftsweep.planning.memory import GB, Adapter, Memory, activation_gb, block_linear_params
from ftsweep.planning.plan import (
    Workload,
    check_fits,
    estimate_trial,
    format_plan_table,
    plan,
    write_plan_json,
)


def _full_memory(arch, precision, zero_stage, offload, num_gpus) -> Memory:
    adapter = Adapter(r=8, targets=("q_proj",))
    return get_method("full").state_memory(arch, precision, adapter, zero_stage, offload, num_gpus)


REQUIRED_KEYS = {
    "method",
    "gpu",
    "num_gpus",
    "est_peak_gb_per_gpu",
    "est_hours",
    "est_cost_usd",
    "fits",
}


@pytest.fixture(scope="module")
def llama7b():
    return compose(["model=llama-2-7b"])


@pytest.fixture(scope="module")
def llama7b_plan(llama7b):
    return plan(llama7b)


def _one(options, method, gpu, num_gpus=1, zero_stage=None, offload=False, optimizer="adamw"):
    found = [
        o
        for o in options
        if o.method == method
        and o.gpu == gpu
        and o.num_gpus == num_gpus
        and o.zero_stage == zero_stage
        and o.offload == offload
        and o.optimizer in (None, optimizer)  # None: a method without the knob
    ]
    assert len(found) == 1, (method, gpu, num_gpus, zero_stage, offload)
    return found[0]


# --- the shipped configs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, tied",
    [("llama-2-7b", False), ("mistral-7b", False), ("llama-3-8b", False), ("smollm2-135m", True)],
)
def test_parameter_counts_follow_from_the_shapes(model, tied):
    arch = compose([f"model={model}"]).model.architecture
    norms = (2 * arch.num_layers + 1) * arch.hidden_size
    embeddings = arch.vocab_size * arch.hidden_size * (1 if tied else 2)
    assert block_linear_params(arch) + norms + embeddings == arch.num_params


def test_every_guide_gpu_has_a_dated_sourced_price():
    catalog = hardware_catalog()
    assert {"cpu", "t4", "l4", "a100-40gb", "a100-80gb", "h100"} <= set(catalog)
    for hw in catalog.values():
        assert hw.price_per_device_hour > 0 and hw.price_source.strip()
        dt.date.fromisoformat(hw.price_date)
        assert hw.memory_gb > 0 and hw.peak_tflops > 0
    assert not catalog["t4"].bf16 and catalog["h100"].bf16


# --- the guide's claims about a 7B model -----------------------------------------------------


def test_7b_memory_orders_full_over_lora_over_qlora_in_the_published_ranges(llama7b_plan):
    full = _one(llama7b_plan, "full", "a100-80gb", zero_stage=0)
    lora = _one(llama7b_plan, "lora", "a100-80gb")
    qlora = _one(llama7b_plan, "qlora", "t4")
    assert full.est_peak_gb_per_gpu > lora.est_peak_gb_per_gpu > qlora.est_peak_gb_per_gpu
    # Guide: full needs 80-100+ GB; without ZeRO sharding no single 80 GB GPU holds it.
    assert 100 < full.est_peak_gb_per_gpu < 160 and not full.fits
    # Guide: LoRA 16-40 GB; QLoRA fits a 16 GB GPU (the QLoRA paper's claim for 7B).
    assert 16 < lora.est_peak_gb_per_gpu < 40
    assert qlora.est_peak_gb_per_gpu < 16 and qlora.fits


def test_full_7b_fits_80gb_gpus_only_when_sharded_or_offloaded(llama7b_plan):
    fitting = [
        o
        for o in llama7b_plan
        if o.method == "full" and o.optimizer == "adamw" and o.gpu == "a100-80gb" and o.fits
    ]
    assert fitting
    assert all(o.num_gpus > 1 and o.zero_stage in (2, 3) or o.offload for o in fitting)
    # the guide's layout: two A100 80GB with ZeRO-3
    assert _one(llama7b_plan, "full", "a100-80gb", 2, zero_stage=3).fits


def test_each_method_marks_its_cheapest_fitting_option(llama7b_plan):
    for method in ("full", "lora", "qlora"):
        marked = [o for o in llama7b_plan if o.method == method and o.cheapest]
        assert len(marked) == 1 and marked[0].fits
        fitting = [o.est_cost_usd for o in llama7b_plan if o.method == method and o.fits]
        assert marked[0].est_cost_usd == min(fitting)


# --- the arithmetic --------------------------------------------------------------------------


def test_zero_sharding_divides_states_by_gpus(llama7b):
    arch = llama7b.model.architecture
    p = arch.num_params
    # DeepSpeed's ZeRO-2 count in bf16: 2 + 18 / n bytes per parameter
    for n in (1, 2, 4, 8):
        m = _full_memory(arch, "bf16", 2, False, n)
        assert m.weights + m.grads + m.optimizer == pytest.approx(p * (2 + 18 / n) / GB)
    zero3 = [_full_memory(arch, "bf16", 3, False, n) for n in (1, 2, 4)]
    totals = [m.weights + m.grads + m.optimizer for m in zero3]
    assert totals[0] > totals[1] > totals[2]
    offloaded = _full_memory(arch, "bf16", 2, True, 1)
    assert offloaded.optimizer == 0 and offloaded.host > 0


def test_torch_frees_grads_between_steps_and_deepspeed_keeps_them(llama7b):
    # backward frees activations as it builds grads: the peak holds the larger, unless the grads
    # live in buffers that persist (DeepSpeed)
    assert Memory(1, 2, 3, 4, 0.5, grads_persist=False).total == 1 + 3 + 4 + 0.5
    assert Memory(1, 2, 3, 4, 0.5, grads_persist=True).total == 1 + 3 + 2 + 4 + 0.5
    arch = llama7b.model.architecture
    assert not _full_memory(arch, "bf16", 0, False, 1).grads_persist
    assert _full_memory(arch, "bf16", 2, False, 1).grads_persist


def test_activations_grow_with_tokens_and_halve_in_16_bits(llama7b):
    arch = llama7b.model.architecture
    one = activation_gb(arch, 1024, 4)
    assert activation_gb(arch, 2048, 4) == pytest.approx(2 * one)
    assert activation_gb(arch, 1024, 2) < 0.6 * one
    adapter = Adapter(r=16, targets=("q_proj", "v_proj"), dropout=0.1)
    assert activation_gb(arch, 1024, 2, adapter) > activation_gb(arch, 1024, 2)


def test_lora_needs_fewer_flops_per_token_than_full(llama7b):
    arch = llama7b.model.architecture
    full = get_method("full").flops_per_token(arch, 512, 0)
    lora = get_method("lora").flops_per_token(arch, 512, 40_000_000)
    assert 0.6 * full < lora < 0.75 * full  # no weight gradients for the frozen base: ~2/3
    assert full > 6 * arch.num_params * 0.9


def test_cost_is_devices_times_hours_times_price(llama7b_plan):
    assert cost_usd(2, 3.0, 1.5) == 9.0
    prices = {n: hw.price_per_device_hour for n, hw in hardware_catalog().items()}
    for o in llama7b_plan[::17]:
        assert o.est_cost_usd == pytest.approx(o.num_gpus * o.est_hours * prices[o.gpu])
        assert o.experiments_per_dollar == pytest.approx(1 / o.est_cost_usd)


def test_zero_collectives_move_what_the_zero_paper_counts():
    # per device and step, in model sizes (16-bit): DDP and ZeRO-2 2x at one micro-batch,
    # ZeRO-3 3x, each x (n-1)/n; one GPU moves nothing
    n, model = 7_000_000_000, 7_000_000_000 * 2
    ring = 7 / 8
    assert collective_bytes_per_step(n, n, "bf16", 0, 8, 1) == pytest.approx(2 * ring * model)
    assert collective_bytes_per_step(n, n, "bf16", 2, 8, 1) == pytest.approx(2 * ring * model)
    assert collective_bytes_per_step(n, n, "bf16", 3, 8, 1) == pytest.approx(3 * ring * model)
    assert collective_bytes_per_step(n, n, "bf16", 3, 1, 4) == 0
    # gradient accumulation: ZeRO-2 reduce-scatters every micro-batch, DDP all-reduces once
    assert collective_bytes_per_step(n, n, "bf16", 2, 8, 4) == pytest.approx(5 * ring * model)
    assert collective_bytes_per_step(n, n, "bf16", 0, 8, 4) == pytest.approx(2 * ring * model)


def test_a_slower_interconnect_slows_sharded_layouts_and_leaves_one_gpu_alone(llama7b):
    from ftsweep.planning.plan import estimate, settings_for

    s = settings_for(llama7b, "bf16", Workload())
    nvlink = hardware_catalog()["a100-80gb"]
    pcie = nvlink.model_copy(update={"interconnect_gb_s": 25.0})
    sharded = [estimate(s, hw, "full", 4, 3) for hw in (nvlink, pcie)]
    # ZeRO-3 on 4 GPUs at batch 4: the all-gathers over PCIe outweigh the compute
    assert sharded[1].est_hours > 3 * sharded[0].est_hours
    single = [estimate(s, hw, "lora", 1) for hw in (nvlink, pcie)]
    assert single[0].est_hours == pytest.approx(single[1].est_hours)
    # the optimizer step is sharded too: a device steps a quarter of the states
    stepping = [
        estimate(s, nvlink.model_copy(update={"memory_bandwidth_gb_s": bw}), "full", 4, 3)
        for bw in (2039.0, 100.0)
    ]
    assert stepping[1].est_hours > stepping[0].est_hours


def test_hours_scale_with_the_workload(llama7b):
    short = plan(llama7b, methods=["lora"], hardware=["h100"], workload=Workload(1000, 128, 1))
    long = plan(llama7b, methods=["lora"], hardware=["h100"], workload=Workload(2000, 128, 3))
    assert long[0].workload_tokens == 6 * short[0].workload_tokens
    assert long[0].est_hours == pytest.approx(6 * short[0].est_hours)


def test_examples_are_cut_at_the_configured_sequence_length():
    cfg = compose(["model=llama-2-7b", "train.seq_len=128"])
    [option] = plan(cfg, methods=["lora"], hardware=["h100"], workload=Workload(100, 512, 1))
    assert option.workload_tokens == 100 * 128


def test_gpus_get_16_bit_mixed_precision_and_the_cpu_keeps_train_precision(llama7b):
    options = plan(llama7b, methods=["lora"], hardware=["cpu", "t4", "h100"])
    assert {o.gpu: o.precision for o in options} == {"cpu": "fp32", "t4": "fp16", "h100": "bf16"}
    [fp32] = plan(llama7b, methods=["lora"], hardware=["h100"], precision="fp32")
    h100 = next(o for o in options if o.gpu == "h100")
    assert fp32.est_peak_gb_per_gpu > 1.8 * h100.est_peak_gb_per_gpu - 2


def test_full_layouts_cover_zero_stages_offload_and_gpu_counts(llama7b):
    options = plan(llama7b, methods=["full"], hardware=["a100-80gb", "cpu"], max_gpus=4)
    gpu = {(o.zero_stage, o.offload, o.num_gpus) for o in options if o.gpu == "a100-80gb"}
    # batch 4 splits over 1, 2 or 4 GPUs, not 3: the trainer would refuse that layout
    assert len(gpu) == 5 * 3 and (3, True, 4) in gpu and not any(n == 3 for _, _, n in gpu)
    cpu = {(o.zero_stage, o.offload, o.num_gpus) for o in options if o.gpu == "cpu"}
    assert cpu == {(0, False, 1), (2, False, 1), (3, False, 1)}


# --- output ----------------------------------------------------------------------------------


def test_plan_json_holds_one_object_per_option(llama7b_plan, tmp_path):
    path = write_plan_json(llama7b_plan, tmp_path / "results" / "plan.json")
    rows = json.loads(path.read_text())
    assert len(rows) == len(llama7b_plan)
    for row in rows:
        assert REQUIRED_KEYS <= set(row)
        assert row["method"] in ("full", "lora", "qlora") and row["num_gpus"] >= 1


def test_table_shows_each_method_per_device_and_the_unsharded_need(llama7b_plan):
    table = format_plan_table(llama7b_plan)
    lines = table.splitlines()
    assert lines[0].startswith("llama-2-7b: memory at batch")
    # one row per device type; full fine-tuning's with AdamW and with 8-bit AdamW
    for method, rows in (("full", 12), ("lora", 6), ("qlora", 6)):
        assert sum(line.startswith(method) for line in lines) == rows
    assert sum(line.rstrip().endswith("*") for line in lines) == 3
    assert "One GPU, no sharding or offload: full" in table
    assert "not calibrated" in table


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"methods": ["prefix"]}, ["method=prefix", "full, lora, qlora"]),
        ({"hardware": ["tpu-v5"]}, ["hardware=tpu-v5", "a100-80gb"]),
        ({"precision": "int8"}, ["precision=int8", "bf16"]),
        ({"max_gpus": 0}, ["gpus=0"]),
    ],
)
def test_bad_plan_arguments_are_named(llama7b, kwargs, named):
    with pytest.raises(ConfigError) as err:
        plan(llama7b, **kwargs)
    for text in named:
        assert text in str(err.value)


def test_unknown_target_modules_are_named():
    cfg = compose(["model=llama-2-7b", "method=lora", "method.target_modules=[c_attn]"])
    with pytest.raises(ConfigError, match="target_modules=c_attn.*q_proj"):
        plan(cfg, methods=["lora"], hardware=["h100"])
    assert check_fits(cfg) is None  # the sweep's guard cannot judge it, so it does not block it


def test_a_model_without_architecture_cannot_be_planned_but_can_be_launched(llama7b):
    raw = llama7b.model_dump()
    raw["model"]["architecture"] = None
    cfg = validate(raw)
    with pytest.raises(ConfigError, match="model.architecture.*conf/model/llama-2-7b.yaml"):
        plan(cfg)
    assert check_fits(cfg) is None and estimate_trial(cfg) is None


# --- check_fits: the sweep's guard ------------------------------------------------------------


def test_check_fits_refuses_unsharded_full_7b_on_one_80gb_gpu():
    cfg = compose(
        [
            "model=llama-2-7b",
            "method=full",
            "method.zero_stage=0",
            "hardware=a100-80gb",
            "train.precision=bf16",
        ]
    )
    message = check_fits(cfg)
    assert message is not None
    for text in (
        "llama-2-7b",
        "GB per GPU",
        "a100-80gb has 80 GB",
        "sweep.force=true",
        "max(grads",
    ):
        assert text in message
    sharded = cfg.with_method(zero_stage=3, num_workers=2)
    assert check_fits(sharded) is None
    one, two = estimate_trial(cfg.with_method(zero_stage=3)), estimate_trial(sharded)
    assert two.num_gpus == 2 and two.est_peak_gb_per_gpu < one.est_peak_gb_per_gpu


def test_check_fits_passes_qlora_7b_on_a_t4_and_the_default_cpu_trial():
    assert (
        check_fits(
            compose(["model=llama-2-7b", "method=qlora", "hardware=t4", "train.precision=fp16"])
        )
        is None
    )
    assert check_fits(compose([])) is None


def test_check_fits_counts_every_cpu_worker_on_the_one_machine():
    # one process fits; four each hold a whole model (and a quarter of the batch) on one machine
    one = compose(["method=full", "train.batch_size=8", "train.seq_len=512"])
    assert check_fits(one) is None
    many = one.with_method(num_workers=4)
    message = check_fits(many)
    assert message is not None and "4 workers x" in message and "per machine" in message


# --- calibration -----------------------------------------------------------------------------


def test_calibration_scales_memory_beyond_runtime_and_speed_per_method_and_device_kind():
    cfg = compose(["model=smollm2-135m"])
    options = plan(cfg, hardware=["cpu", "t4", "h100"])
    t4 = _one(options, "lora", "t4")
    model_part = t4.est_peak_gb_per_gpu - t4.breakdown_gb["runtime"]
    # a run on the T4 that used twice the modelled memory at half the modelled speed
    row = {
        "method": "lora",
        "hardware": "t4",
        "peak_mem_gb": 2 * model_part,  # CUDA's allocator peak: no runtime term in it
        "tokens_per_s": str(t4.est_tokens_per_s / 2),  # MLflow hands numbers over as text
        "model": "smollm2-135m",
        "batch_size": str(cfg.train.batch_size),
    }
    calibrated = calibrate(options, [row])
    new_t4 = _one(calibrated, "lora", "t4")
    assert new_t4.est_peak_gb_per_gpu == pytest.approx(1.0 + 2 * model_part, rel=1e-3)
    assert new_t4.est_hours == pytest.approx(2 * t4.est_hours)
    assert new_t4.est_cost_usd == pytest.approx(2 * t4.est_cost_usd)
    assert "memory x2.00, speed x0.50 from 1 lora run on t4" in new_t4.calibrated
    # the same ratios reach the other GPU, not the CPU nor the other methods
    h100 = _one(options, "lora", "h100")
    assert _one(calibrated, "lora", "h100").est_hours == pytest.approx(2 * h100.est_hours)
    assert _one(calibrated, "lora", "cpu") == _one(options, "lora", "cpu")
    assert _one(calibrated, "qlora", "t4") == _one(options, "qlora", "t4")


def test_calibration_ignores_runs_at_other_settings_and_recomputes_fits(llama7b_plan):
    qlora_t4 = _one(llama7b_plan, "qlora", "t4")
    elsewhere = {"method": "qlora", "hardware": "t4", "peak_mem_gb": 50.0, "tokens_per_s": 1.0}
    assert calibrate(llama7b_plan, [{**elsewhere, "batch_size": 999}]) == llama7b_plan
    assert calibrate(llama7b_plan, [{**elsewhere, "model": "mistral-7b"}]) == llama7b_plan
    heavier = _one(calibrate(llama7b_plan, [{**elsewhere, "model": "llama-2-7b"}]), "qlora", "t4")
    assert heavier.est_peak_gb_per_gpu > qlora_t4.est_peak_gb_per_gpu and not heavier.fits


def test_calibration_matches_full_runs_by_their_zero_layout():
    cfg = compose(["model=smollm2-135m"])
    options = plan(cfg, methods=["full"], hardware=["cpu"])
    zero2 = _one(options, "full", "cpu", zero_stage=2)
    row = {
        "method": "full",
        "hardware": "cpu",
        "zero_stage": "2",
        "offload": "False",
        "peak_mem_gb": zero2.est_peak_gb_per_gpu,
        "tokens_per_s": zero2.est_tokens_per_s * 1.5,
    }
    calibrated = calibrate(options, [row])
    assert _one(calibrated, "full", "cpu", zero_stage=2).est_hours == pytest.approx(
        zero2.est_hours / 1.5
    )
    assert calibrate(options, [{**row, "zero_stage": "3"}]) != options  # ZeRO-3 ran: matched too
    assert calibrate(options, [{**row, "offload": "True"}]) == options  # no offload layout on CPU


def test_the_plan_learns_from_the_runs_in_the_results_store(tiny_overrides, tmp_path, capsys):
    """After a measured run, `ftsweep plan` calibrates the matching option and names the run."""
    from ftsweep.cli import main
    from ftsweep.trial.run import run_trial

    args = [*tiny_overrides, "method=full", "hardware=cpu", f"results_dir={tmp_path}"]
    assert main(["plan", *args]) == 0
    before = json.loads((tmp_path / "plan.json").read_text())
    assert "not calibrated" in capsys.readouterr().out

    result = run_trial(compose([*args, "method.zero_stage=0"]))
    assert main(["plan", *args]) == 0
    out = capsys.readouterr().out
    assert "calibrated from 1 measured run" in out and result.run_id[:8] in out
    after = json.loads((tmp_path / "plan.json").read_text())
    changed = [(b, a) for b, a in zip(before, after, strict=True) if a.get("calibrated")]
    assert changed, "no option was calibrated"
    assert all(b["est_peak_gb_per_gpu"] != a["est_peak_gb_per_gpu"] for b, a in changed)


def test_every_layout_the_plan_offers_is_one_the_trainer_accepts():
    """The plan and the trainer share one rule: the global batch split evenly over devices."""
    from ftsweep.trial.workers import worker_config

    cfg = compose(["model=llama-2-7b", "method=full"])
    options = plan(cfg, methods=["full"], hardware=["a100-80gb"])
    layouts = {(o.num_gpus, o.zero_stage, o.offload) for o in options}
    assert {n for n, _, _ in layouts} == {1, 2, 4}  # batch 4: 3, 5, 6, 7 and 8 GPUs cannot split it
    for n, stage, offload in layouts:
        trial = compose(
            [
                "model=llama-2-7b",
                "method=full",
                f"method.num_workers={n}",
                f"method.zero_stage={stage}",
                f"method.offload={str(offload).lower()}",
            ]
        )
        per_worker = worker_config(trial, n)  # raises for a layout the trainer refuses
        assert per_worker.train.batch_size * n == cfg.train.batch_size
    eight = compose(["model=llama-2-7b", "method=full", "train.batch_size=16"])
    assert 8 in {o.num_gpus for o in plan(eight, methods=["full"], hardware=["a100-80gb"])}


def test_activations_are_sized_for_each_devices_share_of_the_batch():
    cfg = compose(["model=llama-2-7b", "method=full", "train.batch_size=8"])
    options = plan(cfg, methods=["full"], hardware=["a100-80gb"])
    by_gpus = {o.num_gpus: o for o in options if o.zero_stage == 3 and not o.offload}
    assert by_gpus[2].breakdown_gb["activations"] == pytest.approx(
        by_gpus[1].breakdown_gb["activations"] / 2, rel=1e-3
    )


def test_a_trial_on_a_shared_cpu_machine_pays_for_its_share_of_the_cores(monkeypatch):
    from ftsweep.planning.cost import trial_cost_usd

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    whole = compose(["hardware=cpu"])
    half = compose(["hardware=cpu", "train.threads=1"])
    hour = whole.hardware.price_per_device_hour
    assert trial_cost_usd(whole, 3600) == pytest.approx(hour)
    assert trial_cost_usd(half, 3600) == pytest.approx(hour / 2)  # two concurrent trials


# --- a share of one GPU per trial -------------------------------------------------------------


def test_a_share_of_one_gpu_is_planned_with_its_share_of_memory_and_price():
    from ftsweep.planning.cost import trial_cost_usd

    lora = ["model=llama-2-7b", "method=lora", "hardware=a100-80gb", "train.precision=bf16"]
    whole = compose(lora)
    half = compose([*lora, "hardware.devices_per_trial=0.5"])
    quarter = compose([*lora, "hardware.devices_per_trial=0.25"])
    need = estimate_trial(whole).est_peak_gb_per_gpu
    # LoRA of 7B needs ~22 GB: half of an 80 GB GPU holds it, a quarter does not
    assert 20 < need < 40
    assert check_fits(half) is None
    message = check_fits(quarter)
    assert message is not None and "devices_per_trial=0.25" in message and "20 GB" in message
    # two trials on one GPU each pay half of it, and each computes at half its rate
    assert trial_cost_usd(half, 3600) == pytest.approx(trial_cost_usd(whole, 3600) / 2)
    assert estimate_trial(half).est_cost_usd == pytest.approx(estimate_trial(whole).est_cost_usd)
    assert estimate_trial(half).est_hours == pytest.approx(2 * estimate_trial(whole).est_hours)


def test_a_gpu_share_asks_ray_for_that_fraction():
    from ftsweep.sweep.resources import trial_resources

    cfg = compose(["hardware=a100-80gb", "hardware.devices_per_trial=0.5"])
    assert trial_resources(cfg, node_cpus=8)["gpu"] == 0.5
    assert trial_resources(compose(["hardware=a100-80gb"]), node_cpus=8)["gpu"] == 1


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["hardware=a100-80gb", "hardware.devices_per_trial=1.5"], "whole devices"),
        (["hardware=a100-80gb", "hardware.devices_per_trial=0"], "devices_per_trial"),
        (["hardware.devices_per_trial=0.5"], "a CPU machine is one device"),
    ],
)
def test_devices_per_trial_is_whole_devices_or_a_share_of_one_gpu(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        compose(overrides)
