"""Step time per method on one fixed batch, and the FLOP utilisation of those steps.

- lora_vs_full_step_time: LoRA step time / full fine-tuning step time, same batch.
  Goal <= 0.80: LoRA skips the frozen weights' gradients, ~4N instead of 6N FLOPs per token
  (0.67 is the floor).
- qlora_vs_lora_step_time: QLoRA over LoRA (NF4 dequantisation before every matmul).
- flop_utilisation: full fine-tuning's achieved FLOP/s over a matrix-product peak measured in
  the same rounds (bench/flops.py); LoRA's and QLoRA's are in the details.

Each method's model is built by the project's own code (`ftsweep.methods.loading.build_model`,
so LoRA is peft on conf/method/lora.yaml's targets and QLoRA is bitsandbytes NF4); a step is
forward + backward + AdamW step + zero_grad on the same padded batch of training examples.
Full fine-tuning here is plain torch AdamW (ZeRO stage 0): the arithmetic of the method, not
DeepSpeed's engine. After one untimed warm-up step each, every round times one step of each
method (the order rotates per round) and one matrix-product burst; each ratio is the median
over rounds of the ratio within a round.
"""

from __future__ import annotations

import gc
import time

from bench.common import alternate, compose, cpu_threads, log, median, pair_ratios
from bench.flops import _sync, matmul_peak, step_flops

SETTINGS = {
    "full": {"model": "smollm2-135m", "batch": 4, "rounds": 6},
    "quick": {"model": "smollm2-135m", "batch": 4, "rounds": 2},
}
METHODS = ("full", "lora", "qlora")


def method_configs(model: str, batch: int, methods=METHODS, extra: list[str] = ()) -> dict:
    """One config per method; `extra` overrides win (a model= among them replaces `model`)."""
    chosen = [] if any(o.startswith("model=") for o in extra) else [f"model={model}"]
    return {
        m: compose([*chosen, f"method={m}", f"train.batch_size={batch}", *extra]) for m in methods
    }


def fixed_batch(cfg, device: str = "cpu") -> dict:
    """The first train.batch_size training examples, tokenized and padded as a trial pads them."""
    from transformers import AutoTokenizer

    from ftsweep.data.tasks import get_task, three_way_split
    from ftsweep.data.tokenize import PadCollator, TokenizedDataset
    from ftsweep.models.builtin import resolve_model_path

    path = resolve_model_path(cfg.model.name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    train = three_way_split(get_task(cfg.data), cfg.data).train
    items = TokenizedDataset(tokenizer, train[: cfg.train.batch_size], cfg.train.seq_len)
    batch = PadCollator(tokenizer.pad_token_id)([items[i] for i in range(len(items))])
    return {k: v.to(device) for k, v in batch.items()}


def build(cfg, device: str = "cpu"):
    """The method's model (the project's loading and adapters) and an AdamW over what trains."""
    import torch

    from ftsweep.methods.loading import build_model
    from ftsweep.models.builtin import resolve_model_path

    model = build_model(cfg, resolve_model_path(cfg.model.name_or_path))
    if (
        device != "cpu" and not cfg.method.spec.quantized
    ):  # a 4-bit base is placed by its device_map
        model.to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=cfg.method.learning_rate, weight_decay=cfg.method.weight_decay
    )
    return model, optimizer


def train_step(
    model, optimizer, batch: dict, device: str = "cpu", precision: str = "fp32"
) -> float:
    """Seconds for forward + backward + optimizer step + zero_grad, with the trial's recipe:
    fp32 weights, 16-bit compute by autocast where `precision` asks for it."""
    import torch

    from ftsweep.methods.loading import dtype_of

    _sync(device)
    started = time.perf_counter()
    with torch.autocast(device, dtype=dtype_of(precision), enabled=precision != "fp32"):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - started


def measure(
    configs: dict,
    rounds: int,
    device: str = "cpu",
    peak_dtype: str = "fp32",
    peak_n: int = 2048,
) -> dict:
    """Step times per method and matrix-product peaks, alternating; ratios and utilisation."""
    import torch

    if device == "cpu":
        torch.set_num_threads(cpu_threads())
    first = next(iter(configs.values()))
    batch = fixed_batch(first, device)
    positions = int(batch["input_ids"].numel())  # batch x padded width: what the step computes
    width = int(batch["input_ids"].shape[1])
    real_tokens = int(batch["attention_mask"].sum())
    built = {}
    for name, cfg in configs.items():
        log(f"steps: loading {name}")
        built[name] = build(cfg, device)
        # warm-up: optimizer states, allocator
        train_step(*built[name], batch, device, cfg.train.precision)
    sides = {
        name: (
            lambda pair=pair, p=configs[name].train.precision: train_step(*pair, batch, device, p)
        )
        for name, pair in built.items()
    }
    sides["matmul_peak"] = lambda: matmul_peak(peak_n, dtype=peak_dtype, device=device)
    times = alternate(sides, rounds, "steps")
    peaks = times.pop("matmul_peak")
    flops = {name: step_flops(configs[name], positions, width) for name in configs}
    utilisation = {
        name: median([flops[name] / t / p for t, p in zip(times[name], peaks, strict=True)])
        for name in configs
    }
    out = {
        "step_time_s": {name: median(ts) for name, ts in times.items()},
        "step_times_s": times,
        "tokens_per_s": {name: real_tokens / median(ts) for name, ts in times.items()},
        "matmul_peak_flops": median(peaks),
        "matmul_peaks_flops": peaks,
        "achieved_flops": {name: flops[name] / median(times[name]) for name in configs},
        "flops_per_step": flops,
        "utilisation": utilisation,
        "batch": {
            "sequences": int(batch["input_ids"].shape[0]),
            "width": width,
            "positions": positions,
            "real_tokens": real_tokens,
        },
    }
    if "lora" in times and "full" in times:
        out["lora_vs_full"] = median(pair_ratios(times["lora"], times["full"]))
    if "qlora" in times and "lora" in times:
        out["qlora_vs_lora"] = median(pair_ratios(times["qlora"], times["lora"]))
    del built
    gc.collect()
    return out


def run(quick: bool = False) -> tuple[dict, dict]:
    """(figures, details) for lora_vs_full_step_time, qlora_vs_lora_step_time, flop_utilisation."""
    s = SETTINGS["quick" if quick else "full"]
    configs = method_configs(s["model"], s["batch"])
    result = measure(configs, s["rounds"])
    figures = {
        "lora_vs_full_step_time": result["lora_vs_full"],
        "qlora_vs_lora_step_time": result["qlora_vs_lora"],
        "flop_utilisation": result["utilisation"]["full"],
    }
    details = {
        "model": s["model"],
        "rounds": s["rounds"],
        "precision": "fp32",
        "full_layout": "plain torch AdamW (ZeRO stage 0)",
        "lora": _lora_label(configs["lora"]),
        **result,
    }
    return figures, details


def _lora_label(cfg) -> str:
    m = cfg.method
    return f"r={m.lora_r} alpha={m.lora_alpha:g} targets={m.target_modules}"
