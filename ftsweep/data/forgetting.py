"""Forgetting: how much worse the model got at general text it already handled.

Measured as the mean next-token loss on a fixed passage of English prose before and after
fine-tuning; forgetting = loss_after - loss_before, positive when the model got worse
(Biderman et al. 2024, "LoRA Learns Less and Forgets Less", measure forgetting the same way
on data outside the fine-tuning domain).

The passage ships with every CPython: the "Objects, values and types" and "Exceptions"
sections of the Python Language Reference, which `pydoc` keeps in the standard-library module
`pydoc_data.topics` (topics "objects" and "exceptions"). Nothing is downloaded, and the text is
the same on every machine with the same Python version.
"""

from __future__ import annotations

import re

TOPICS = ("objects", "exceptions")
DEFAULT_MAX_TOKENS = 256  # ~1,400 tokens are available; 256 keeps a smollm2 pass well under 2 s
WINDOW = 256  # tokens per sequence; within the context of the smallest built-in model


def general_text() -> str:
    """The reference passage as plain paragraphs (the reST underlines dropped, lines joined)."""
    from pydoc_data.topics import topics

    paragraphs = []
    for topic in TOPICS:
        for block in re.split(r"\n\s*\n", topics[topic]):
            lines = [line.strip() for line in block.splitlines()]
            lines = [line for line in lines if line and not re.fullmatch(r"[*=\-]+", line)]
            if lines:
                paragraphs.append(" ".join(lines))
    return "\n\n".join(paragraphs)


def general_text_ids(tokenizer, max_tokens: int = DEFAULT_MAX_TOKENS) -> list[int]:
    return tokenizer(general_text(), add_special_tokens=False)["input_ids"][:max_tokens]


def general_text_loss(
    model, tokenizer, max_tokens: int = DEFAULT_MAX_TOKENS, window: int = WINDOW
) -> float:
    """Mean next-token loss (nats) of the model over the first `max_tokens` tokens of the passage.

    The tokens are cut into windows of `window` tokens, scored as one batch; the loss is the mean
    over every token a window predicts.
    """
    import torch

    ids = general_text_ids(tokenizer, max_tokens)
    if len(ids) < 2:
        raise ValueError(f"max_tokens={max_tokens}: at least 2 tokens are needed to measure a loss")
    windows = [ids[start : start + window] for start in range(0, len(ids), window)]
    windows = [w for w in windows if len(w) >= 2]
    width = max(len(w) for w in windows)
    input_ids = torch.zeros(len(windows), width, dtype=torch.long)
    mask = torch.zeros(len(windows), width, dtype=torch.long)
    for row, w in enumerate(windows):
        input_ids[row, : len(w)] = torch.tensor(w)
        mask[row, : len(w)] = 1

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
    finally:
        model.train(was_training)
    # Token t predicts token t+1; padding neither predicts nor is predicted.
    logits = logits[:, :-1].float()
    targets = input_ids[:, 1:].to(logits.device)
    valid = (mask[:, 1:] * mask[:, :-1]).bool().to(logits.device)
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return float(losses[valid].mean())
