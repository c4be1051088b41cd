"""Built-in tasks: deterministic, disjoint train/eval, metrics in [0, 1], and a real lift from LoRA."""

from __future__ import annotations

import json
import typing

import pytest

from ftsweep.config import ConfigError, DataConfig, compose
from ftsweep.data.tasks import DIFFICULTIES, builtin_tasks, get_task
from ftsweep.data.tasks.domain import TriageTask
from ftsweep.data.tasks.format import FormatTask
from ftsweep.data.tasks.knowledge import EVAL_ASK, TRAIN_ASK, KnowledgeTask
from ftsweep.data.tasks.metrics import (
    field_accuracy,
    json_exact_match,
    json_field_accuracy,
    normalize,
    token_f1,
)

BUILTIN = ["format", "knowledge", "domain"]
CASES = [(task, level) for task in BUILTIN for level in DIFFICULTIES]


def _task(name: str, difficulty: str):
    return get_task(compose([f"data={name}", f"data.difficulty={difficulty}"]).data)


def test_config_tasks_match_the_registry():
    allowed = set(typing.get_args(DataConfig.model_fields["task"].annotation))
    assert allowed == set(builtin_tasks()) | {"jsonl"}


@pytest.mark.parametrize(("name", "difficulty"), CASES)
def test_eval_examples_never_appear_in_training(name, difficulty):
    task = _task(name, difficulty)
    train, eval_set = task.split(200, 32, seed=3)
    assert train and eval_set
    train_prompts = {ex.prompt for ex in train}
    assert not train_prompts & {ex.prompt for ex in eval_set}
    # No eval prompt is hidden inside a training prompt either (same question, more text).
    for ex in eval_set:
        question = ex.prompt.split("\n\n")[-1]
        assert not any(question in prompt for prompt in train_prompts), question


@pytest.mark.parametrize(("name", "difficulty"), CASES)
def test_split_is_deterministic_and_seeded(name, difficulty):
    task = _task(name, difficulty)
    assert task.split(40, 8, seed=1) == task.split(40, 8, seed=1)
    assert task.split(40, 8, seed=1) != task.split(40, 8, seed=2)


@pytest.mark.parametrize(("name", "difficulty"), CASES)
def test_reference_scores_one_and_garbage_zero(name, difficulty):
    task = _task(name, difficulty)
    _, eval_set = task.split(40, 8, seed=0)
    for ex in eval_set:
        assert task.score(ex.completion, ex.completion) == 1.0
        assert task.score("I do not know.", ex.completion) == 0.0
        assert 0.0 <= task.score(ex.completion[: len(ex.completion) // 2], ex.completion) <= 1.0


def test_difficulty_changes_what_is_asked():
    keys = {
        level: set(json.loads(FormatTask(level).split(1, 1, 0)[0][0].completion))
        for level in DIFFICULTIES
    }
    assert len(keys["easy"]) < len(keys["medium"]) < len(keys["hard"])
    assert "order_date" in keys["hard"]
    assert "priority" not in TriageTask("easy").split(1, 1, 0)[0][0].completion
    assert "priority" in TriageTask("medium").split(1, 1, 0)[0][0].completion
    sizes = {level: len(KnowledgeTask(level).facts(0)) for level in DIFFICULTIES}
    assert sizes["easy"] < sizes["medium"] < sizes["hard"]


def test_sizes_follow_the_config():
    train, eval_set = _task("domain", "medium").split(17, 5, seed=0)
    assert (len(train), len(eval_set)) == (17, 5)
    # The knowledge pool is finite: products x (2 phrasings x facts + a profile).
    train, eval_set = KnowledgeTask("easy").split(10_000, 10_000, seed=0)
    assert len(train) == 6 * (2 * 2 + 1)
    assert len(eval_set) == 6 * 2 * 4  # every fact in each of its four held-out phrasings


def test_format_hard_writes_the_date_as_iso():
    train, _ = FormatTask("hard").split(5, 1, seed=0)
    for ex in train:
        record = json.loads(ex.completion)
        year, month, day = record["order_date"].split("-")
        assert len(year) == 4 and 1 <= int(month) <= 12 and 1 <= int(day) <= 28
        assert str(record["quantity"]) in ex.prompt and str(int(day)) in ex.prompt


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_knowledge_eval_is_answerable_from_training_but_phrased_differently(difficulty):
    task = KnowledgeTask(difficulty)
    train, eval_set = task.split(10_000, 10_000, seed=5)
    catalogue = task.catalogue(5)
    train_questions = {ask.format(p="{p}") for asks in TRAIN_ASK.values() for ask in asks}
    eval_questions = {ask for asks in EVAL_ASK.values() for ask in asks}
    assert not train_questions & eval_questions
    for ex in eval_set:
        product = next(p for p in catalogue if p in ex.prompt)
        assert ex.completion in catalogue[product].values()
        # The fact is taught: a training question or profile about this product gives this value.
        taught = [t for t in train if product in t.prompt and ex.completion in t.completion]
        assert taught, (ex.prompt, ex.completion)
    # Given room, every fact is asked about, in all four held-out phrasings.
    asked = {(next(p for p in catalogue if p in ex.prompt), ex.completion) for ex in eval_set}
    assert asked == {(p, v) for p, values in catalogue.items() for v in values.values()}
    assert len(eval_set) == 4 * len(asked)


def test_knowledge_short_training_still_covers_the_facts_it_asks_about():
    task = KnowledgeTask("medium")
    facts = task.facts(0)
    train, eval_set = task.split(len(facts), 1000, seed=0)
    assert len(train) == len(facts)
    # One question per fact, no profile: every fact is taught exactly once.
    assert sorted(ex.completion for ex in train) == sorted(f.value for f in facts)
    assert len(eval_set) == 4 * len(facts)
    # A short eval set asks about as many facts as it can before asking one twice.
    _, short = task.split(len(facts), len(facts), seed=0)
    assert len({ex.prompt.split("the ")[-1] for ex in short}) > 0.5 * len(facts)


def test_metrics():
    assert normalize("  The Orvane Labs. ") == "orvane labs"
    assert token_f1("made by Orvane Labs", "Orvane Labs") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("", "x") == 0.0
    assert (
        field_accuracy("category: billing, priority: low", "category: billing, priority: urgent")
        == 0.5
    )
    assert (
        field_accuracy("Category: Billing\npriority: urgent", "category: billing, priority: urgent")
        == 1.0
    )
    assert field_accuracy("billing", "category: billing") == 0.0


def test_json_partial_credit_counts_the_keys_written_right():
    reference = '{"order_id": 1234, "customer": "Yara Kim", "city": "Kyoto", "amount_usd": 40}'
    assert json_field_accuracy(reference, reference) == 1.0
    one_wrong = '{"order_id": 1234, "customer": "Yara Kim", "city": "Osaka", "amount_usd": 40}'
    assert json_field_accuracy(one_wrong, reference) == 0.75
    assert json_exact_match(one_wrong, reference) == 0.0
    # A typed field must keep its type: "40" is not 40.
    as_text = one_wrong.replace("40", '"40"').replace("Osaka", "Kyoto")
    assert json_field_accuracy(as_text, reference) == 0.75
    # A reply cut short, or with words around it, still gets the fields it wrote.
    assert json_field_accuracy('Sure! {"order_id": 1234, "customer": "Yara', reference) == 0.25
    assert json_field_accuracy("no JSON here", reference) == 0.0


@pytest.mark.parametrize(("name", "difficulty"), CASES)
def test_every_task_scores_exact_and_partial(name, difficulty):
    task = _task(name, difficulty)
    _, held_out = task.split(40, 8, seed=0)
    for ex in held_out:
        assert task.scores(ex.completion, ex.completion) == {"exact": 1.0, "partial": 1.0}
        views = task.scores(ex.completion[: len(ex.completion) * 2 // 3], ex.completion)
        # Two thirds of a reply is never exactly right, and partial credit never less than exact.
        assert views["exact"] == 0.0 and views["partial"] >= views["exact"]
        assert task.score(ex.completion, ex.completion) == 1.0


def test_unknown_task_name_is_refused():
    with pytest.raises(ConfigError, match="nosuch.*allowed: domain, format, knowledge, jsonl"):
        get_task("nosuch")
    with pytest.raises(ConfigError, match="data.path"):
        get_task("jsonl")


def test_default_data_is_the_format_task():
    cfg = compose([])
    assert cfg.data.task == "format"
    task = get_task(cfg.data)
    assert isinstance(task, FormatTask) and task.difficulty == "medium"
    # A bare name (what older callers pass) gives the same task.
    assert get_task("format").split(8, 2, 0) == task.split(8, 2, 0)


# Few steps at a LoRA-sized learning rate; each task trains for about a minute on 2 CPU cores.
LIFT_OVERRIDES = {
    "format": ["train.max_steps=12"],
    "knowledge": ["train.max_steps=25"],
    "domain": ["train.max_steps=15"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTIN)
def test_lora_lifts_quality_over_the_base_model(name, tmp_path):
    from ftsweep.trial.baseline import record_baseline
    from ftsweep.trial.run import run_trial

    cfg = compose(
        [
            "model=smollm2-135m",
            "method=lora",
            "method.learning_rate=2e-3",
            f"data={name}",
            "data.num_eval=16",
            "data.num_test=16",
            "train.batch_size=8",
            "train.log_every=5",
            f"results_dir={tmp_path}",
            *LIFT_OVERRIDES[name],
        ]
    )
    before = record_baseline(cfg)["quality"]
    metrics = run_trial(cfg).metrics
    after = metrics["quality"]
    print(f"{name}: quality {before:.3f} -> {after:.3f}, forgetting {metrics.get('forgetting')}")
    assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0
    assert after >= before + 0.25, f"{name}: LoRA quality {after:.3f} vs base {before:.3f}"
