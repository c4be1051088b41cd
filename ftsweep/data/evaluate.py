"""Quality by generation: greedy, bounded length, batched, scored by the task's metric."""

from __future__ import annotations

import torch

from ftsweep.data.tasks import Example, Task
from ftsweep.data.tokenize import prompt_text, stop_token_ids


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
