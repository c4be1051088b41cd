"""Forgetting: how much worse the model got at general text it already handled.

The model's next-token loss on the shipped general English text (`ftsweep.data.corpus`, 9,298
SmolLM2 tokens from four sources) is measured before fine-tuning and after; forgetting is the
token-weighted mean loss after minus before, on the same tokens, positive when the model got
worse (Biderman et al. 2024, "LoRA Learns Less and Forgets Less", measure forgetting the same way
on text outside the fine-tuning domain). Its 95% interval comes from a paired bootstrap over the
256-token windows: windows are drawn with replacement and the difference recomputed, so a
window that is hard before is hard after.

The text is scored in windows of 256 tokens, a few windows per forward pass, so the logits
(windows x 256 x vocabulary floats, ~200 MB for SmolLM2 at 4 windows) stay bounded whatever the
corpus's length. One measurement of SmolLM2-135M (38 windows, fp32) took 135-155 s on 2 CPU
cores shared with other work (load average ~5), and its NF4-quantised base (dequantised on
the CPU) ~290 s. A trial measures twice
(before and after), a QLoRA trial three times (the unquantised base too); the two-layer
`tiny-llama` of the tests takes a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftsweep.data.corpus import WINDOW, corpus_windows
from ftsweep.data.intervals import Interval, ratio_of_sums

BATCH_WINDOWS = 4  # windows per forward pass: bounds the logits' memory
IGNORED = -100  # a label that is not scored


@dataclass(frozen=True)
class WindowLosses:
    """A model's next-token loss on each window of the corpus: summed over the tokens a window
    predicts (nats), and how many it predicts."""

    sums: np.ndarray
    tokens: np.ndarray

    @property
    def loss(self) -> float:
        """Mean loss per token over every window (nats)."""
        return float(self.sums.sum() / self.tokens.sum())

    @property
    def total_tokens(self) -> int:
        return int(self.tokens.sum())

    def interval(self) -> Interval:
        """The mean loss per token with its 95% bootstrap interval over windows."""
        return ratio_of_sums(self.sums, self.tokens)

    def minus(self, before: WindowLosses) -> Interval:
        """Mean loss per token here minus before, with its paired 95% interval over windows.
        ValueError unless both scored the same windows."""
        if not np.array_equal(self.tokens, before.tokens):
            raise ValueError("the two measurements scored different windows: nothing to pair")
        return ratio_of_sums(self.sums - before.sums, self.tokens)


def window_losses(
    model, tokenizer=None, window: int = WINDOW, windows: list[list[int]] | None = None
) -> WindowLosses:
    """The model's summed loss and predicted-token count on each window (by default the whole
    corpus's), with the model in eval mode and no gradients; its mode is restored after."""
    import torch

    windows = corpus_windows(tokenizer, window) if windows is None else windows
    if not windows or min(len(w) for w in windows) < 2:
        raise ValueError("every window needs at least 2 tokens to measure a loss")
    device = next(model.parameters()).device
    sums, tokens = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(windows), BATCH_WINDOWS):
                batch_sums, batch_tokens = _batch_losses(
                    model, windows[start : start + BATCH_WINDOWS], device
                )
                sums += batch_sums
                tokens += batch_tokens
    finally:
        model.train(was_training)
    return WindowLosses(np.array(sums, dtype=float), np.array(tokens, dtype=float))


def _batch_losses(model, windows: list[list[int]], device) -> tuple[list[float], list[int]]:
    import torch

    width = max(len(w) for w in windows)
    input_ids = torch.zeros(len(windows), width, dtype=torch.long)
    mask = torch.zeros(len(windows), width, dtype=torch.long)
    for row, w in enumerate(windows):
        input_ids[row, : len(w)] = torch.tensor(w)
        mask[row, : len(w)] = 1
    logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
    # Token t predicts token t+1; the last token, and padding (after a text's last, shorter
    # window), predict nothing. Scoring every position against shifted labels keeps the logits
    # contiguous: no copy of the largest tensor here.
    labels = torch.full_like(input_ids, IGNORED)
    labels[:, :-1] = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, IGNORED)
    labels = labels.to(logits.device)
    losses = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=IGNORED,
        reduction="none",
    ).view(labels.shape)
    return losses.sum(dim=1).tolist(), (labels != IGNORED).sum(dim=1).tolist()


def forgetting_metrics(after: WindowLosses, before: WindowLosses) -> dict[str, float]:
    """What a run records of forgetting: after minus before with its interval, the tokens it
    rests on, and both losses."""
    change = after.minus(before)
    return {
        "forgetting": change.estimate,
        "forgetting_ci_low": change.low,
        "forgetting_ci_high": change.high,
        "forgetting_tokens": after.total_tokens,
        "general_text_loss": after.loss,
        "general_text_loss_base": before.loss,
    }


def quantization_metrics(quantized: WindowLosses, base: WindowLosses) -> dict[str, float]:
    """What quantising the base cost on general text: its loss minus the unquantised base's,
    with the paired interval."""
    cost = quantized.minus(base)
    return {
        "quantization_loss": cost.estimate,
        "quantization_loss_ci_low": cost.low,
        "quantization_loss_ci_high": cost.high,
    }


# A method whose base is not quantised loses nothing to quantisation, by definition.
NO_QUANTIZATION = {
    "quantization_loss": 0.0,
    "quantization_loss_ci_low": 0.0,
    "quantization_loss_ci_high": 0.0,
}
