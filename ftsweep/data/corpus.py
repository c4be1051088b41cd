"""The general English text forgetting is measured on, shipped with ftsweep (`general_text/`).

Four texts of three kinds, each extracted once from a text every CPython or Debian machine has,
whose licence lets it be copied, and stored as package data so every machine scores the same
tokens: technical exposition (the Python Language Reference: objects, the execution model and
the standard type hierarchy, code listings and grammar left out), narrative (the history of
Python from CPython's LICENSE) and legal drafting (the Apache License 2.0 and the CC0 1.0 legal
code). 9,298 SmolLM2 tokens in all (reference 5,510, Apache 1,865, CC0 1,458, history 465), cut
into 38 windows that predict 9,260 tokens. One window says little: SmolLM2-135M's mean loss per
window ranges from 2.50 to 3.98 nats (SD 0.33 between windows), and over all of them it is 2.968
[2.877, 3.060]; a change paired over the same windows is tighter: NF4 quantisation costs it
+0.267 [+0.226, +0.319] nats a token.

Each file opens with one `# ` line naming its source and licence; the text follows, paragraphs
separated by blank lines. A different text is a different input: `corpus_fingerprint` names
this one, and every run records it (param `forgetting_corpus`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

CORPUS_PACKAGE = "ftsweep.data"
CORPUS_FOLDER = "general_text"
WINDOW = 256  # tokens per window: within the context of the smallest built-in model


@dataclass(frozen=True)
class Source:
    """One text of the corpus: its file name, where it came from (the header line), the text."""

    name: str
    header: str
    text: str


@cache
def corpus_sources() -> tuple[Source, ...]:
    """The corpus's texts, in file-name order."""
    folder = files(CORPUS_PACKAGE) / CORPUS_FOLDER
    sources = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".txt"):
            continue
        header, _, text = entry.read_text(encoding="utf-8").partition("\n")
        if not header.startswith("# "):
            raise ValueError(f"{entry.name}: the first line must be '# ' and the source")
        sources.append(Source(entry.name.removesuffix(".txt"), header[2:], text.strip()))
    if not sources:
        raise FileNotFoundError(f"no general text in {folder}: the package data is missing")
    return tuple(sources)


def fingerprint(sources: tuple[Source, ...]) -> str:
    """A short id of the texts themselves (not their headers): any edit changes it."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.text.encode() + b"\0")
    return digest.hexdigest()[:12]


def corpus_fingerprint() -> str:
    """The id of the shipped corpus, recorded with every run as `forgetting_corpus`."""
    return fingerprint(corpus_sources())


def general_text() -> str:
    """Every text of the corpus, one after another."""
    return "\n\n".join(source.text for source in corpus_sources())


def corpus_windows(tokenizer, window: int = WINDOW, limit: int | None = None) -> list[list[int]]:
    """The corpus's token ids cut into windows of `window` tokens; each text is cut on its own,
    so no window spans two texts (a text's last window is shorter; one of a single token, which
    predicts nothing, is dropped). `limit` keeps that many windows spread evenly over the
    corpus, so a shorter measurement still samples every source."""
    if window < 2:
        raise ValueError(f"window={window}: a window needs at least 2 tokens")
    windows = []
    for source in corpus_sources():
        ids = tokenizer(source.text, add_special_tokens=False)["input_ids"]
        windows += [ids[start : start + window] for start in range(0, len(ids), window)]
    windows = [w for w in windows if len(w) >= 2]
    if limit is None or limit >= len(windows):
        return windows
    return [windows[i * len(windows) // limit] for i in range(limit)]
