"""Quality by generation: greedy, bounded length, batched, scored by the task's metric."""

from __future__ import annotations

import torch

from ftsweep.data.tokenize import prompt_text, stop_token_ids
from ftsweep.data.tasks import Example, Task


@torch.no_grad()
def generate_replies(
    model, tokenizer, prompts: list[str | Example], batch_size: int, max_new_tokens: int
) -> list[str]:
    """Greedy replies to each prompt (a string, or an example with its framing), cut at the end of turn."""
    was_training = model.training
    model.eval()
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = (
        "left"  # left padding keeps every prompt's last token adjacent to its reply
    )
    replies: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [prompt_text(tokenizer, p) for p in prompts[start : start + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop_token_ids(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
            )
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            replies.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = previous_side
        model.train(was_training)
    return replies


def task_quality(
    model, tokenizer, task: Task, examples: list[Example], batch_size: int, max_new_tokens: int
) -> float:
    """Mean score of the model's greedy replies to the examples, in [0, 1]."""
    replies = generate_replies(model, tokenizer, examples, batch_size, max_new_tokens)
    scores = [task.score(reply, ex.completion) for reply, ex in zip(replies, examples, strict=True)]
    return sum(scores) / len(scores)


def base_model_quality(cfg) -> float:
    """Quality of the untrained base model on the config's eval set: the bar fine-tuning must clear."""
    from transformers import AutoTokenizer

    from ftsweep.methods.loading import load_base_model
    from ftsweep.models.builtin import resolve_model_path
    from ftsweep.data.tasks import get_task

    path = resolve_model_path(cfg.model.name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    task = get_task(cfg.data)
    _, eval_examples = task.split(cfg.data.num_train, cfg.data.num_eval, cfg.data.seed)
    model = load_base_model(cfg, path)
    return task_quality(
        model, tokenizer, task, eval_examples, cfg.train.eval_batch_size, cfg.train.max_new_tokens
    )
