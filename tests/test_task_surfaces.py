"""Held-out examples share no surface form with training: no template, no name, no cue.

Checked on the text itself, not on ids: every value of a held-out slot (a name, a city, an
urgency cue) is looked for in every training prompt, and every held-out sentence, with its
slots blanked out, is compared with the training sentences blanked the same way.
"""

from __future__ import annotations

import re

import pytest

from ftsweep.data.tasks import DIFFICULTIES, domain
from ftsweep.data.tasks import format as format_task
from ftsweep.data.tasks.knowledge import EVAL_ASK, TRAIN_ASK, KnowledgeTask


def _mentions(value: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(value)}\b", text) is not None


def _skeleton(text: str, values: list[str]) -> str:
    """The sentence with every slot value and number blanked: its template."""
    for value in sorted(values, key=len, reverse=True):
        text = re.sub(rf"\b{re.escape(value)}\b", "<v>", text)
    text = re.sub(r"\d+", "<n>", text)
    return re.sub("|".join(format_task.MONTHS), "<m>", text)


FORMAT_VALUES = [v for pool in format_task.SLOTS.values() for v in pool.train + pool.held_out]


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_format_held_out_uses_unseen_templates_and_values(difficulty):
    train, held_out = format_task.FormatTask(difficulty).split(512, 512, seed=0)
    train_text = "\n".join(ex.prompt for ex in train)
    for pool in format_task.SLOTS.values():
        assert not any(_mentions(value, train_text) for value in pool.held_out)
        assert not any(_mentions(value, ex.prompt) for value in pool.train for ex in held_out)
    train_forms = {_skeleton(ex.prompt, FORMAT_VALUES) for ex in train}
    held_forms = {_skeleton(ex.prompt, FORMAT_VALUES) for ex in held_out}
    assert held_forms and not train_forms & held_forms
    # Every held-out template is used, so the split tests all of them.
    templates = format_task.HARD_TEMPLATES if difficulty == "hard" else format_task.TEMPLATES
    assert len(held_forms) >= len(templates.held_out)


def _problem_pattern(template: str) -> re.Pattern:
    """A problem sentence template as a regex that finds it, slots filled, inside a ticket."""
    text = re.escape(template)
    for slot in ("product", "order", "amount", "days", "code", "years"):
        text = text.replace(re.escape("{" + slot + "}"), r"\w+")
    return re.compile(text)


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_domain_held_out_uses_unseen_problems_cues_and_products(difficulty):
    train, held_out = domain.TriageTask(difficulty).split(512, 512, seed=0)
    train_text = "\n".join(ex.prompt for ex in train)
    assert not any(_mentions(p, train_text) for p in domain.PRODUCTS.held_out)
    for side, others in ((True, train), (False, held_out)):
        # No sentence of one side's problems or cues appears in a ticket of the other side.
        problems = [
            _problem_pattern(s) for pool in domain.PROBLEMS.values() for s in pool.side(side)
        ]
        cues = [c for pool in domain.CUES.values() for c in pool.side(side)]
        for ex in others:
            assert not any(p.search(ex.prompt) for p in problems), ex.prompt
            assert not any(cue in ex.prompt for cue in cues), ex.prompt
    # Each held-out ticket does carry a held-out problem sentence (the test above is not vacuous).
    held_problems = [
        _problem_pattern(s) for pool in domain.PROBLEMS.values() for s in pool.held_out
    ]
    assert all(any(p.search(ex.prompt) for p in held_problems) for ex in held_out)


def test_knowledge_held_out_questions_are_phrased_as_training_never_is():
    task = KnowledgeTask("hard")
    train, held_out = task.split(10_000, 10_000, seed=0)
    train_questions = {ex.prompt for ex in train}
    train_forms = {ask for asks in TRAIN_ASK.values() for ask in asks}
    for ex in held_out:
        assert ex.prompt not in train_questions
        form = next(ask for asks in EVAL_ASK.values() for ask in asks if _fits(ask, ex.prompt))
        assert form not in train_forms


def _fits(ask: str, prompt: str) -> bool:
    return re.search(re.escape(ask).replace(re.escape("{p}"), ".+") + "$", prompt) is not None
