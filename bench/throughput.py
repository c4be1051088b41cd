"""trainer_vs_bare_throughput: a trial's training loop against a minimal hand-written one.

Tokens/s of `ftsweep.trial.recipe.train_and_evaluate` (HF Trainer, the trial's callback and token
counter; its `tokens_per_s` metric: real tokens / Trainer runtime) over tokens/s of a loop
written by hand with PyTorch + peft on the same model, LoRA config, data, batch size, sequence
length, optimizer (AdamW, linear decay, gradient clipping at 1.0 as the Trainer does) and
number of steps. Both time the same span: from before the optimizer is made to after the last
step. Goal >= 0.95. The trial's evaluation is shrunk to almost nothing (it is not timed).
"""

from __future__ import annotations

import gc
import time

from bench.common import NoRecord, alternate, compose, cpu_threads, median, pair_ratios

SETTINGS = {
    "full": {"model": "smollm2-135m", "steps": 8, "reps": 2},
    "quick": {"model": "smollm2-135m", "steps": 3, "reps": 1},
}


def config(model: str, steps: int):
    return compose(
        [
            f"model={model}",
            "method=lora",
            f"train.max_steps={steps}",
            f"train.threads={cpu_threads()}",
            "data.num_train=64",  # more than the steps use; tokenising is not timed either way
            "data.num_eval=2",  # evaluation is not part of the figure: keep it short
            "train.max_new_tokens=1",
        ]
    )


def trainer_tokens_per_s(cfg) -> float:
    from ftsweep.trial.recipe import train_and_evaluate

    metrics = train_and_evaluate(cfg, NoRecord.trial_id, NoRecord(), None)
    gc.collect()
    return metrics["tokens_per_s"]


def bare_tokens_per_s(cfg) -> float:
    """The same training, written with nothing but PyTorch and peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftsweep.data.tasks import get_task, three_way_split
    from ftsweep.data.tokenize import PadCollator, TokenizedDataset
    from ftsweep.models.builtin import resolve_model_path

    t, m = cfg.train, cfg.method
    torch.set_num_threads(t.threads or cpu_threads())
    torch.manual_seed(t.seed)
    path = resolve_model_path(cfg.model.name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    train = three_way_split(get_task(cfg.data), cfg.data).train
    data = TokenizedDataset(tokenizer, train, t.seq_len)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=m.lora_r,
            lora_alpha=m.lora_alpha,
            lora_dropout=m.lora_dropout,
            target_modules=m.target_names,
            task_type="CAUSAL_LM",
        ),
    )
    model.train()
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=t.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(t.seed),
        collate_fn=PadCollator(tokenizer.pad_token_id),
    )
    params = [p for p in model.parameters() if p.requires_grad]

    started = time.perf_counter()
    optimizer = torch.optim.AdamW(params, lr=m.learning_rate, weight_decay=m.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / t.max_steps)
    tokens = 0
    for _, batch in zip(range(t.max_steps), loader, strict=False):
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
    elapsed = time.perf_counter() - started
    del model, optimizer
    gc.collect()
    return tokens / elapsed


def run(quick: bool = False) -> tuple[dict, dict]:
    s = SETTINGS["quick" if quick else "full"]
    cfg = config(s["model"], s["steps"])
    speeds = alternate(
        {
            "trainer": lambda: trainer_tokens_per_s(cfg),
            "bare": lambda: bare_tokens_per_s(cfg),
        },
        s["reps"],
        "throughput",
    )
    ratio = median(pair_ratios(speeds["trainer"], speeds["bare"]))
    details = {
        "model": s["model"],
        "steps": s["steps"],
        "reps": s["reps"],
        "batch_size": cfg.train.batch_size,
        "seq_len": cfg.train.seq_len,
        "lora": f"r={cfg.method.lora_r} targets={cfg.method.target_modules}",
        "tokens_per_s": speeds,
    }
    return {"trainer_vs_bare_throughput": ratio}, details
