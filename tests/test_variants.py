"""The variants people choose between: DoRA, rsLoRA, PiSSA/OLoRA inits, LoRA+ and full
fine-tuning with 8-bit optimizer states. Each is a validated knob, recorded, part of the trial
id only when set, sized by the plan, and compared by the report where a sweep varies it."""

from __future__ import annotations

import datetime as dt
import math

import pytest
import torch

from ftsweep.config import ConfigError
from ftsweep.methods.loading import build_model, load_base_model
from ftsweep.models.builtin import resolve_model_path
from ftsweep.planning.memory import GB, Adapter, activation_gb, adapter_params, embedding_params
from ftsweep.tracking.record import run_params
from ftsweep.trial.identity import run_name_for, trial_id_for

# --- one trial per knob records it --------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, params, word",
    [
        (["method.use_dora=true"], {"use_dora": "True"}, "dora"),
        (["method.use_rslora=true"], {"use_rslora": "True"}, "rslora"),
        (["method.init=pissa_niter_2"], {"init": "pissa_niter_2"}, "init-pissa_niter_2"),
        (["method.loraplus_lr_ratio=16"], {"loraplus_lr_ratio": "16.0"}, "loraplus16"),
        (
            ["method=full", "method.zero_stage=0", "method.optimizer=adamw_8bit"],
            {"optimizer": "adamw_8bit"},
            "adamw_8bit",
        ),
    ],
)
def test_a_trial_records_its_variant_knob_as_a_param(tiny_config, overrides, params, word):
    from ftsweep.tracking.store import get_client, tracking_uri
    from ftsweep.trial.run import run_trial

    cfg = tiny_config(*overrides, "sweep.name=variants-record")
    result = run_trial(cfg)
    assert result.status == "FINISHED"
    run = get_client(tracking_uri(cfg)).get_run(result.run_id)
    assert params.items() <= run.data.params.items()
    assert word in run.info.run_name.split()
    assert math.isfinite(run.data.metrics["quality"])


# --- what each variant does to the model ----------------------------------------------------


def _model(tiny_config, *overrides):
    cfg = tiny_config(*overrides)
    return cfg, build_model(cfg, resolve_model_path(cfg.model.name_or_path))


def _one_step(model, optimizer=None) -> None:
    torch.manual_seed(0)
    batch = torch.randint(0, 1000, (2, 12))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer or torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    model(input_ids=batch, labels=batch).loss.backward()
    optimizer.step()


def _lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


def test_dora_adds_a_trained_magnitude_per_output_feature_of_each_target(tiny_config):
    _, plain = _model(tiny_config, "method.target_modules=attention")
    assert not [n for n, _ in plain.named_parameters() if "lora_magnitude_vector" in n]
    _, model = _model(tiny_config, "method.target_modules=attention", "method.use_dora=true")
    layers = _lora_layers(model)
    assert len(layers) == 2 * 4  # two layers x q, k, v, o
    for layer in layers.values():
        magnitude = layer.lora_magnitude_vector["default"].weight
        base = layer.get_base_layer().weight
        assert magnitude.requires_grad and magnitude.shape == (base.shape[0],)
        # peft starts the magnitude at the norm of each output row of W + BA, with B = 0: of W
        assert torch.allclose(magnitude, base.float().norm(dim=1), rtol=1e-5)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "magnitude" in n}
    _one_step(model)
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)


def test_rslora_scales_by_alpha_over_the_square_root_of_the_rank(tiny_config):
    _, plain = _model(tiny_config, "method.lora_r=16", "method.lora_alpha=32")
    _, rs = _model(
        tiny_config, "method.lora_r=16", "method.lora_alpha=32", "method.use_rslora=true"
    )
    assert {m.scaling["default"] for m in _lora_layers(plain).values()} == {32 / 16}
    assert {m.scaling["default"] for m in _lora_layers(rs).values()} == {32 / 4}


@pytest.mark.parametrize("init", ["pissa", "pissa_niter_4", "olora"])
def test_residual_inits_leave_the_base_weight_minus_the_scaled_adapter(tiny_config, init):
    cfg, model = _model(tiny_config, "method.target_modules=attention", f"method.init={init}")
    original = load_base_model(cfg, resolve_model_path(cfg.model.name_or_path))
    weights = dict(original.named_parameters())
    for name, layer in _lora_layers(model).items():
        w = weights[name.removeprefix("base_model.model.") + ".weight"].detach()
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        delta = layer.scaling["default"] * b @ a
        residual = layer.get_base_layer().weight
        # peft's docs: the base keeps W - scale x B A, so base + adapter is W at the start
        assert torch.allclose(residual, w - delta, atol=1e-5)
        assert not torch.allclose(residual, w, atol=1e-3), "the base weight was left as it was"
        assert b.abs().sum() > 0  # unlike the default init, B does not start at 0


def test_a_pissa_adapter_is_saved_for_the_original_base(tiny_config, tmp_path):
    from types import SimpleNamespace

    from peft import PeftModel

    cfg, model = _model(tiny_config, "method.target_modules=attention", "method.init=pissa")
    _one_step(model)
    model.eval()
    tokens = torch.randint(0, 1000, (1, 10))
    with torch.no_grad():
        trained = model(input_ids=tokens).logits
    out = tmp_path / "adapter"
    cfg.method.spec.save_trained(SimpleNamespace(model=model), cfg.method, str(out))
    base = load_base_model(cfg, resolve_model_path(cfg.model.name_or_path))
    converted = PeftModel.from_pretrained(base, str(out)).eval()
    assert converted.peft_config["default"].r == 2 * cfg.method.lora_r
    with torch.no_grad():
        again = converted(input_ids=tokens).logits
    assert torch.allclose(trained, again, atol=1e-4)


def test_loraplus_gives_b_its_ratio_of_the_learning_rate(tiny_config, tmp_path):
    from ftsweep.trial.hf_trainer import training_arguments

    cfg, model = _model(tiny_config, "method.loraplus_lr_ratio=16", "method.learning_rate=1e-3")
    args = training_arguments(cfg, str(tmp_path), False)
    optimizer = cfg.method.spec.build_optimizer(model, cfg.method, args)
    names = {id(p): n for n, p in model.named_parameters()}
    rates = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rates[names[id(p)]] = group["lr"]
    assert rates and all(rates[n] == pytest.approx(1e-3) for n in rates if "lora_A" in n)
    assert all(rates[n] == pytest.approx(16e-3) for n in rates if "lora_B" in n)
    assert {n for n in rates} == {n for n, p in model.named_parameters() if p.requires_grad}
    plain_cfg, plain = _model(tiny_config)
    assert plain_cfg.method.spec.build_optimizer(plain, plain_cfg.method, args) is None


def test_8bit_adamw_keeps_uint8_states_on_this_cpu_and_32_bits_for_the_embedding(
    tiny_config, tmp_path
):
    from transformers import Trainer

    from ftsweep.trial.hf_trainer import training_arguments

    overrides = ("method=full", "method.zero_stage=0")
    cfg, model = _model(tiny_config, *overrides, "method.optimizer=adamw_8bit")
    optimizer = Trainer(
        model=model, args=training_arguments(cfg, str(tmp_path), False)
    ).create_optimizer()
    _one_step(model, optimizer)
    state = {n: optimizer.state[p]["state1"].dtype for n, p in model.named_parameters()}
    embedding = "model.embed_tokens.weight"
    # what the plan counts (memory.optimizer_state_bytes): 8-bit moments for every weight of
    # 4,096 values or more but the embedding, which the Trainer keeps in 32 bits
    assert state[embedding] == torch.float32
    big = {n for n, p in model.named_parameters() if p.numel() >= 4096 and n != embedding}
    assert big and {state[n] for n in big} == {torch.uint8}
    plain = training_arguments(tiny_config(*overrides), str(tmp_path), False)
    assert "8bit" not in str(plain.optim)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["method.init=svd"], ["method.init='svd'", "allowed: default, gaussian, pissa"]),
        (["method.init=pissa_niter_K"], ["method.init='pissa_niter_K'", "pissa_niter_4"]),
        (["method.init=loftq"], ["method.init='loftq'", "method=qlora"]),
        (
            ["method=qlora", "method.init=pissa"],
            [
                "method.init='pissa'",
                "full-precision base",
                "allowed: default, gaussian, olora, loftq",
            ],
        ),
        (["method=qlora", "method.init=loftq"], ["method.init=loftq", "CUDA", "hardware=cpu"]),
        (["method.use_dora=perhaps"], ["method.use_dora='perhaps'", "boolean"]),
        (
            ["method.use_dora=true", "method.init=pissa"],
            ["method.use_dora=true with method.init=pissa", "allowed with DoRA"],
        ),
        (
            ["method.loraplus_lr_ratio=0.5"],
            ["method.loraplus_lr_ratio=0.5", "greater than or equal to 1"],
        ),
        (["method=full", "method.optimizer=sgd"], ["method.optimizer='sgd'", "'adamw_8bit'"]),
        (
            ["method=full", "method.optimizer=adamw_8bit", "method.offload=true"],
            ["method.optimizer=adamw_8bit with method.offload=true", "allowed with offload: adamw"],
        ),
    ],
)
def test_a_bad_variant_value_names_the_key_the_value_and_what_is_allowed(
    tiny_config, overrides, named
):
    with pytest.raises(ConfigError) as error:
        tiny_config(*overrides)
    for text in named:
        assert text in str(error.value)


def test_loftq_is_accepted_on_a_cuda_hardware_config(tiny_config):
    assert tiny_config("method=qlora", "method.init=loftq", "hardware=h100").method.init == "loftq"


@pytest.mark.parametrize(
    "overrides, method",
    [
        (["method=full", "method.use_dora=true"], "full"),
        (["method=full", "method.init=pissa"], "full"),
        (["method=full", "method.loraplus_lr_ratio=16"], "full"),
        (["method=lora", "method.optimizer=adamw_8bit"], "lora"),
    ],
)
def test_a_variant_knob_on_a_method_it_does_not_apply_to_is_refused(tiny_config, overrides, method):
    with pytest.raises(ConfigError, match=f"not a knob of method {method}"):
        tiny_config(*overrides)


def test_a_sweep_space_with_a_knob_of_another_method_is_refused(tiny_config, tmp_path):
    from ftsweep.sweep.space import expand

    sweep = tmp_path / "bad.yaml"
    sweep.write_text(
        "# @package _global_\nsweep:\n  name: bad\n  space:\n"
        "    - method: full\n      params: {use_dora: [true]}\n"
    )
    with pytest.raises(ConfigError, match="use_dora: unknown knob for method full"):
        expand(tiny_config(f"sweep={sweep}"))


# --- identity -------------------------------------------------------------------------------

# What a default trial recorded before the variant knobs existed: at their defaults they add
# nothing, so these trials keep their ids.
PARAMS_BEFORE = {
    "lora": {"lora_r", "lora_alpha", "lora_dropout", "target_modules"},
    "qlora": {"lora_r", "lora_alpha", "lora_dropout", "target_modules"},
    "full": {"zero_stage", "offload", "num_workers"},
}


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_variant_knobs_at_their_defaults_leave_the_trial_id_alone(tiny_config, method):
    cfg = tiny_config(f"method={method}")
    own = set(cfg.method.spec.record_params(cfg.method))
    assert own == PARAMS_BEFORE[method]
    defaults = {
        "lora": ["method.use_dora=false", "method.use_rslora=false", "method.init=default"],
        "full": ["method.optimizer=adamw"],
    }
    explicit = tiny_config(f"method={method}", *defaults.get(method, defaults["lora"]))
    assert trial_id_for(explicit) == trial_id_for(cfg)
    assert run_name_for(explicit) == run_name_for(cfg)
    assert run_params(explicit) == run_params(cfg)


@pytest.mark.parametrize(
    "change",
    [
        "method.use_dora=true",
        "method.use_rslora=true",
        "method.init=gaussian",
        "method.loraplus_lr_ratio=4",
    ],
)
def test_a_variant_knob_set_is_part_of_the_trial_id_and_the_run_name(tiny_config, change):
    plain, changed = tiny_config(), tiny_config(change)
    assert trial_id_for(changed) != trial_id_for(plain)
    assert run_name_for(changed) != run_name_for(plain)


# --- the plan -------------------------------------------------------------------------------


def _arch(name: str = "llama-3-8b"):
    from ftsweep.config import compose

    return compose([f"model={name}"], check_data=False).model.architecture


@pytest.mark.parametrize("optimizer", ["adamw_8bit", "paged_adamw_8bit"])
def test_8bit_states_shrink_full_fine_tuning_by_six_bytes_a_weight(optimizer):
    from ftsweep.methods import get_method

    arch, full = _arch(), get_method("full")
    adapter = Adapter(16, ("q_proj",))
    p, embedding = arch.num_params, embedding_params(arch)
    for stage, gpus, flat in ((0, 1, False), (2, 4, True)):
        adamw = full.state_memory(arch, "bf16", adapter, stage, False, gpus)
        eight = full.state_memory(arch, "bf16", adapter, stage, False, gpus, optimizer=optimizer)
        # 8 bytes of AdamW moments against 2 uint8 moments + 2 fp32 absmax per 256 values;
        # without ZeRO the Trainer keeps the embedding's states in 32 bits
        saved = (p if flat else p - embedding) * (8 - 2 - 8 / 256) / gpus / GB
        assert adamw.optimizer - eight.optimizer == pytest.approx(saved, rel=1e-9)
        assert (adamw.weights, adamw.grads) == (eight.weights, eight.grads)


def test_the_plan_says_whether_8bit_full_fine_tuning_fits_one_80gb_gpu():
    from ftsweep.config import compose
    from ftsweep.planning.plan import format_plan_table, plan

    options = plan(compose(["model=llama-3-8b"], check_data=False))
    eight = [o for o in options if o.optimizer == "adamw_8bit"]
    assert eight and not [o for o in eight if o.offload]
    one = next(o for o in eight if o.gpu == "h100" and o.num_gpus == 1 and o.zero_stage == 0)
    adamw = next(
        o
        for o in options
        if o.optimizer == "adamw" and o.gpu == "h100" and o.num_gpus == 1 and o.zero_stage == 0
    )
    assert adamw.est_peak_gb_per_gpu - one.est_peak_gb_per_gpu > 40  # ~6 bytes x 8B weights
    table = format_plan_table(options)
    line = next(x for x in table.splitlines() if x.startswith("Full fine-tuning with 8-bit AdamW"))
    verdict = "fits" if one.fits else "does not fit in 80 GB"
    assert "80 GB GPU" in line and line.endswith(verdict) and "optimizer" in line
    assert "ZeRO-0, 8-bit AdamW" in table


def test_dora_activations_are_what_autograd_saves_beyond_lora(tiny_config):
    """The plan's DoRA term against the bytes autograd keeps for backward on the tiny model."""
    import weakref

    from ftsweep.planning.settings import adapter_of

    def saved(cfg, model, batch) -> int:
        refs = []
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t: refs.append(weakref.ref(t)) or t, lambda t: t
        ):
            loss = model(input_ids=batch, labels=batch).loss
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        alive = {}
        for ref in refs:
            t = ref()
            if t is not None:
                alive[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        del loss
        return sum(n for ptr, n in alive.items() if ptr not in weights)

    batch = torch.randint(0, 1000, (4, 32))
    measured, planned = {}, {}
    for dora in ("false", "true"):
        cfg, model = _model(tiny_config, f"method.use_dora={dora}")
        model.train()
        measured[dora] = saved(cfg, model, batch)
        planned[dora] = (
            activation_gb(cfg.model.architecture, batch.numel(), 4, adapter_of(cfg)) * GB
        )
    extra_measured = measured["true"] - measured["false"]
    extra_planned = planned["true"] - planned["false"]
    assert extra_planned > 0
    assert extra_measured == pytest.approx(extra_planned, rel=0.1)


def test_dora_magnitudes_train_and_pissa_pays_its_svd_once(tiny_config):
    from ftsweep.methods import get_method
    from ftsweep.planning.cost import load_hardware

    arch, lora = _arch(), get_method("lora")
    plain = Adapter(16, ("q_proj", "v_proj"))
    dora = Adapter(16, ("q_proj", "v_proj"), dora=True)
    # one magnitude per output feature: q (4096) + v (1024 with 8 KV heads), 32 layers
    assert adapter_params(arch, dora) - adapter_params(arch, plain) == 32 * (4096 + 1024)
    hw = load_hardware("h100")
    assert lora.variant_speed(dora) < 1 == lora.variant_speed(plain)
    full_svd = lora.setup_seconds(arch, Adapter(16, ("q_proj",), init="pissa"), hw)
    fast_svd = lora.setup_seconds(arch, Adapter(16, ("q_proj",), init="pissa_niter_4"), hw)
    assert full_svd > fast_svd > 0 == lora.setup_seconds(arch, plain, hw)
    cfg = tiny_config("model=llama-3-8b", "hardware=h100", "method.init=pissa")
    from ftsweep.planning.plan import estimate_trial

    with_svd, without = (
        estimate_trial(cfg),
        estimate_trial(tiny_config("model=llama-3-8b", "hardware=h100")),
    )
    assert with_svd.est_setup_s > 0 == without.est_setup_s
    assert with_svd.est_hours > without.est_hours


# --- the report -----------------------------------------------------------------------------


def _row(method, quality, cost, lr, seed=0, **variant):
    from ftsweep.report.runs import RunRow

    params = {
        "method": method,
        "learning_rate": str(lr),
        "seed": str(seed),
        "hardware": "cpu",
        "model": "tiny-llama",
        "lora_r": "16",
        "lora_alpha": "32.0",
        "target_modules": "all-linear",
        **{k: str(v) for k, v in variant.items()},
    }
    metrics = {
        "quality": quality,
        "quality_ci_low": quality - 0.01,
        "quality_ci_high": quality + 0.01,
        "cost_usd": cost,
        "wall_time_s": 100.0,
    }
    return RunRow(
        f"{method}-{quality}-{lr}-{variant}", "run", "FINISHED", "completed", params, metrics
    )


def _document(rows):
    from ftsweep.report.analysis import analyse_rows
    from ftsweep.report.sections import build_document

    a = analyse_rows(
        rows, experiment="v", tracking_uri="sqlite:///x", target=None, today=dt.date(2026, 12, 1)
    )
    return a, build_document(a, {}).to_markdown()


def test_the_report_compares_a_variant_the_sweep_varied_at_each_ones_best_rate():
    rows = [
        _row("lora", 0.80, 0.010, 1e-3),
        _row("lora", 0.84, 0.010, 3e-3),
        _row("lora", 0.86, 0.013, 1e-3, use_dora=True),
        _row("lora", 0.90, 0.013, 3e-4, use_dora=True),
        # another variant: not what DoRA's "off" stands for
        _row("lora", 0.88, 0.010, 1e-3, use_rslora=True),
    ]
    a, text = _document(rows)
    section = text.split("## Variant: DoRA (method.use_dora)")[1].split("\n## ")[0]
    lines = [x for x in section.splitlines() if x.startswith("| LoRA")]
    assert len(lines) == 2
    off, on = (next(x for x in lines if f"| {v}" in x) for v in ("off (plain)", "on"))
    assert "| 3e-03 |" in off and "0.840" in off  # plain LoRA's best rate
    assert "| 3e-04 |" in on and "0.900" in on  # DoRA's own best rate
    assert "$0.013" in on
    assert "LoRA on minus off: quality +0.060" in section
    assert "1.3x the plain one's cost per run" in section
    # the variant is one more axis of the decision: the recommendation names it
    assert "DoRA" in a.recommendation.best.knobs
    assert "## Variant: how the adapters start" not in text  # init was not varied


def test_no_variant_section_when_no_variant_knob_varies():
    rows = [_row("lora", 0.80, 0.01, 1e-3), _row("lora", 0.84, 0.01, 3e-3)]
    _, text = _document(rows)
    assert "## Variant:" not in text


# --- the shipped sweep ------------------------------------------------------------------------


def test_the_variants_sweep_asks_each_variant_at_its_own_rates_with_seeds(tiny_overrides):
    from ftsweep.config import compose
    from ftsweep.sweep.space import expand

    cfg = compose([*tiny_overrides, "sweep=variants"])
    specs = expand(cfg)
    assert len({s.trial_id for s in specs}) == len(specs)
    assert {s.config.method.lora_r for s in specs} == {16}
    variants = {}
    for s in specs:
        m = s.config.method
        key = (m.use_dora, m.use_rslora, m.init, m.loraplus_lr_ratio)
        variants.setdefault(key, set()).add((m.learning_rate, s.config.train.seed))
    assert len(variants) == 5  # plain, DoRA, rsLoRA, PiSSA, LoRA+
    assert all(len({lr for lr, _ in runs}) >= 2 for runs in variants.values())
    assert all(len({seed for _, seed in runs}) >= 2 for runs in variants.values())


def test_a_measured_8bit_run_calibrates_against_the_8bit_estimate():
    from ftsweep.config import compose
    from ftsweep.planning.fit import calibrate
    from ftsweep.planning.plan import plan

    options = plan(compose(["model=smollm2-135m"]), methods=["full"], hardware=["cpu"])

    def zero0(opts, optimizer):
        return next(o for o in opts if o.zero_stage == 0 and o.optimizer == optimizer)

    eight = zero0(options, "adamw_8bit")
    row = {
        "method": "full",
        "hardware": "cpu",
        "zero_stage": "0",
        "offload": "False",
        "optimizer": "adamw_8bit",
        "peak_mem_gb": eight.est_peak_gb_per_gpu,  # as the plan said: memory x1.00
        "tokens_per_s": eight.est_tokens_per_s,
    }
    calibrated = calibrate(options, [row])
    assert zero0(calibrated, "adamw").est_peak_gb_per_gpu == pytest.approx(
        zero0(options, "adamw").est_peak_gb_per_gpu
    )
