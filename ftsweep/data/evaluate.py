"""Quality by generation: greedy, bounded length, batched, scored by the task's metric."""

from __future__ import annotations

import torch

from ftsweep.data.tasks import Example, Task, example_id
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
    texts = [prompt_text(tokenizer, p) for p in prompts]
    # Batches of prompts of about one length: little padding to compute, and the replies come
    # back in the prompts' order.
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    replies: list[str] = [""] * len(texts)
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in rows],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            batch = {k: v.to(model.device) for k, v in batch.items()}
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop_token_ids(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
            )
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for row, reply in zip(rows, decoded, strict=True):
                replies[row] = reply
    finally:
        tokenizer.padding_side = previous_side
        model.train(was_training)
    return replies


def score_examples(
    model, tokenizer, task: Task, examples: list[Example], batch_size: int, max_new_tokens: int
) -> list[float]:
    """Each example's score in [0, 1] for the model's greedy reply."""
    replies = generate_replies(model, tokenizer, examples, batch_size, max_new_tokens)
    return [task.score(reply, ex.completion) for reply, ex in zip(replies, examples, strict=True)]


def task_quality(
    model, tokenizer, task: Task, examples: list[Example], batch_size: int, max_new_tokens: int
) -> float:
    """Mean score of the model's greedy replies to the examples, in [0, 1]."""
    scores = score_examples(model, tokenizer, task, examples, batch_size, max_new_tokens)
    return sum(scores) / len(scores)


# What each view of a reply is recorded as: quality is the task's primary view, and both views
# are recorded under their own names too (`exact_match`, `partial_credit`).
VIEW_METRICS = {"exact": "exact_match", "partial": "partial_credit"}


def score_splits(
    model,
    tokenizer,
    task: Task,
    splits: dict[str, list[Example]],
    batch_size: int,
    max_new_tokens: int,
) -> tuple[dict[str, float], dict]:
    """Quality on the validation and test splits with 95% bootstrap intervals, exact match and
    partial credit beside it, and the per-example scores (ids and scores per split) a report
    can compare runs on."""
    from ftsweep.data.intervals import mean_interval

    metrics: dict[str, float] = {}
    per_example: dict[str, dict] = {}
    for split, prefix in (("validation", ""), ("test", "test_")):
        examples = splits[split]
        replies = generate_replies(model, tokenizer, examples, batch_size, max_new_tokens)
        views = [task.scores(r, e.completion) for r, e in zip(replies, examples, strict=True)]
        scores = [task.score(r, e.completion) for r, e in zip(replies, examples, strict=True)]
        named = {"quality": scores} | {
            VIEW_METRICS[view]: [v[view] for v in views] for view in VIEW_METRICS
        }
        for name, values in named.items():
            low, high = mean_interval(values)
            metrics |= {
                f"{prefix}{name}": sum(values) / len(values),
                f"{prefix}{name}_ci_low": low,
                f"{prefix}{name}_ci_high": high,
            }
        per_example[split] = {
            "ids": [example_id(e) for e in examples],
            "scores": scores,
            **{VIEW_METRICS[view]: [v[view] for v in views] for view in VIEW_METRICS},
        }
    metrics["num_eval_examples"] = len(splits["validation"])
    metrics["num_test_examples"] = len(splits["test"])
    return metrics, per_example
