"""Examples -> token ids, with the prompt masked out of the loss.

The tokenizer's chat template (where it has one) wraps the prompt as a user turn; the
completion is the assistant's reply, ended by the end-of-turn token. Labels are -100 on every
prompt token, so only the reply is learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ftsweep.tasks import Example

IGNORE_INDEX = -100


def prompt_text(tokenizer, prompt: str) -> str:
    """The text the model sees before its reply, as the chat template frames it."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt + "\n"


def end_of_reply(tokenizer) -> str:
    """What closes a reply: the chat template's end-of-turn token, else EOS."""
    if getattr(tokenizer, "chat_template", None) and "<|im_end|>" in tokenizer.get_vocab():
        return "<|im_end|>"
    return tokenizer.eos_token or ""


def tokenize_example(tokenizer, example: Example, max_len: int) -> dict[str, list[int]]:
    prompt_ids = tokenizer(prompt_text(tokenizer, example.prompt), add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(example.completion + end_of_reply(tokenizer), add_special_tokens=False)["input_ids"]
    input_ids = (prompt_ids + reply_ids)[:max_len]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + reply_ids)[:max_len]
    return {"input_ids": input_ids, "labels": labels}


class TokenizedDataset(torch.utils.data.Dataset):
    def __init__(self, tokenizer, examples: list[Example], max_len: int):
        self.items = [tokenize_example(tokenizer, ex, max_len) for ex in examples]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]

    @property
    def num_tokens(self) -> int:
        return sum(len(item["input_ids"]) for item in self.items)


@dataclass
class PadCollator:
    """Right-pads a batch; padding is masked from attention and loss."""

    pad_token_id: int

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in batch)
        input_ids, labels, attention = [], [], []
        for item in batch:
            pad = width - len(item["input_ids"])
            input_ids.append(item["input_ids"] + [self.pad_token_id] * pad)
            labels.append(item["labels"] + [IGNORE_INDEX] * pad)
            attention.append([1] * len(item["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(input_ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(attention),
        }
