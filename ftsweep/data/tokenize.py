"""Examples -> token ids, with the prompt masked out of the loss.

The tokenizer's chat template (where it has one) frames the prompt as a user turn, or as the
conversation so far for chat data; the completion is the assistant's reply, ended by the
end-of-turn token. Plain-text examples skip the template and end with EOS. Labels are -100 on
every prompt token, so only the reply is learned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ftsweep.data.tasks import Example

_log = logging.getLogger(__name__)

IGNORE_INDEX = -100


def _as_example(prompt: str | Example) -> Example:
    return prompt if isinstance(prompt, Example) else Example(prompt=prompt, completion="")


def prompt_text(tokenizer, prompt: str | Example) -> str:
    """The text the model sees before its reply, as the chat template frames it."""
    example = _as_example(prompt)
    if example.plain:
        return example.prompt
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            example.turns(), tokenize=False, add_generation_prompt=True
        )
    # No template: the turns' text, one per line, then the reply on the next line.
    return "".join(content + "\n" for _, content in example.context) or example.prompt + "\n"


def end_of_reply(tokenizer, plain: bool = False) -> str:
    """What closes a reply: the chat template's end-of-turn token, else (and for plain text) EOS."""
    if (
        not plain
        and getattr(tokenizer, "chat_template", None)
        and _has_token(tokenizer, "<|im_end|>")
    ):
        return "<|im_end|>"
    return tokenizer.eos_token or ""


def _has_token(tokenizer, token: str) -> bool:
    # One lookup; `token in tokenizer.get_vocab()` copies the whole vocabulary on every call.
    token_id = tokenizer.convert_tokens_to_ids(token)
    return token_id is not None and (
        token_id != tokenizer.unk_token_id or token == tokenizer.unk_token
    )


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end a generated reply, chat or plain."""
    tokens = {end_of_reply(tokenizer), end_of_reply(tokenizer, plain=True)}
    return sorted(tokenizer.convert_tokens_to_ids(t) for t in tokens if t)


def tokenize_example(tokenizer, example: Example, max_len: int) -> dict[str, list[int]]:
    """Prompt and reply token ids, with the prompt masked from the loss (labels -100).

    An example longer than max_len is cut; the reply is cut only when it alone is longer than
    the half of the window it is guaranteed, and then `reply_cut` is set."""
    prompt_ids = tokenizer(prompt_text(tokenizer, example), add_special_tokens=False)["input_ids"]
    reply = example.completion + end_of_reply(tokenizer, example.plain)
    reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
    full_reply = len(reply_ids)
    if len(prompt_ids) + len(reply_ids) > max_len:
        # Keep at least half the window for the reply, so a long prompt cannot leave an example
        # with nothing to learn; the prompt loses its start, keeping the turn header it ends with.
        keep_reply = min(len(reply_ids), max(max_len // 2, max_len - len(prompt_ids)))
        prompt_ids = prompt_ids[len(prompt_ids) - (max_len - keep_reply) :]
        reply_ids = reply_ids[:keep_reply]
    return {
        "input_ids": prompt_ids + reply_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + reply_ids,
        "reply_cut": len(reply_ids) < full_reply,
    }


class TokenizedDataset(torch.utils.data.Dataset):
    def __init__(self, tokenizer, examples: list[Example], max_len: int):
        self.items = [tokenize_example(tokenizer, ex, max_len) for ex in examples]
        self.replies_cut = sum(item.pop("reply_cut") for item in self.items)
        if self.replies_cut:
            # A model never shown how a reply ends keeps generating: quality can drop to 0.
            _log.warning(
                "train.seq_len=%d cuts the reply of %d of %d examples (and its end-of-turn "
                "token); raise train.seq_len or shorten the data",
                max_len,
                self.replies_cut,
                len(self.items),
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


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
