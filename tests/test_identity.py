"""Results belong to their inputs: everything that can change a result is in the trial id and
recorded, the same inputs give the same id, and the held-out splits never touch training."""

from __future__ import annotations

import json

import pytest

from ftsweep.data.tasks import example_id, get_task, three_way_split
from ftsweep.sweep.space import expand
from ftsweep.tracking.record import TAG_INPUTS, inputs_id, run_params
from ftsweep.trial.baseline import baseline_trial_id
from ftsweep.trial.identity import trial_id_for

QA = [(f"What is item {i}?", f"answer {i}") for i in range(40)]


def _jsonl(path, pairs) -> str:
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs))
    return str(path)


@pytest.mark.parametrize(
    "change",
    [
        "data.difficulty=hard",
        "data.num_eval=8",
        "data.num_test=8",
        "data.seed=3",
        "train.max_new_tokens=20",
        "train.eval_batch_size=4",
        "method.weight_decay=0.1",
        "train.seed=1",
    ],
)
def test_every_input_and_knob_that_can_change_a_result_changes_the_trial_id(tiny_config, change):
    plain = tiny_config()
    changed = tiny_config(change)
    assert trial_id_for(plain) != trial_id_for(changed)
    assert trial_id_for(plain) == trial_id_for(tiny_config())  # same inputs, same id


def test_another_model_path_is_another_trial_and_another_inputs_group(tiny_config, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 64}')
    (folder / "model.safetensors").write_bytes(b"weights-one")
    local = tiny_config(f"model.name_or_path={folder}")
    assert trial_id_for(local) != trial_id_for(tiny_config())
    before = run_params(local)
    (folder / "model.safetensors").write_bytes(b"weights-two")  # same path, other weights
    after = run_params(local)
    assert before["model.fingerprint"] != after["model.fingerprint"]
    assert inputs_id(before) != inputs_id(after)


def test_two_user_files_are_two_trials_and_a_rewrite_with_the_same_bytes_is_the_same(
    tiny_config, tmp_path
):
    first = _jsonl(tmp_path / "a.jsonl", QA)
    second = _jsonl(tmp_path / "b.jsonl", [(p, c.upper()) for p, c in QA])
    cfg_a = tiny_config("data=jsonl", f"data.path={first}")
    cfg_b = tiny_config("data=jsonl", f"data.path={second}")
    assert trial_id_for(cfg_a) != trial_id_for(cfg_b)
    assert baseline_trial_id(cfg_a) != baseline_trial_id(cfg_b)
    id_a = trial_id_for(cfg_a)
    _jsonl(tmp_path / "a.jsonl", [(p, c + "!") for p, c in QA])  # same path, other contents
    changed = tiny_config("data=jsonl", f"data.path={first}")
    assert trial_id_for(changed) != id_a
    _jsonl(tmp_path / "a.jsonl", QA)  # the original bytes again
    assert trial_id_for(tiny_config("data=jsonl", f"data.path={first}")) == id_a


def test_a_sweep_with_other_data_expands_to_other_trials(tiny_overrides):
    from ftsweep.config import compose

    plain = {s.trial_id for s in expand(compose([*tiny_overrides, "sweep=smoke"]))}
    hard = {
        s.trial_id
        for s in expand(compose([*tiny_overrides, "sweep=smoke", "data.difficulty=hard"]))
    }
    assert len(plain) == len(hard) == 3
    assert not plain & hard


def test_inputs_id_ignores_training_knobs_but_not_scoring(tiny_config):
    base = run_params(tiny_config())
    assert inputs_id(base) == inputs_id(run_params(tiny_config("method.learning_rate=0.01")))
    assert inputs_id(base) != inputs_id(run_params(tiny_config("train.max_new_tokens=9")))


@pytest.mark.parametrize("task", ["format", "knowledge", "domain"])
def test_validation_and_test_share_nothing_with_training_or_each_other(tiny_config, task):
    cfg = tiny_config(f"data={task}", "data.num_eval=12", "data.num_test=12")
    splits = three_way_split(get_task(cfg.data), cfg.data)
    train = {example_id(e) for e in splits.train}
    validation = [example_id(e) for e in splits.validation]
    test = [example_id(e) for e in splits.test]
    assert validation and test
    assert not train & set(validation) and not train & set(test)
    assert not set(validation) & set(test)
    assert len(set(validation)) == len(validation) and len(set(test)) == len(test)
    again = three_way_split(get_task(cfg.data), cfg.data)
    assert [example_id(e) for e in again.test] == test  # fixed by data.seed


def test_a_trial_seed_changes_the_data_order_and_data_seed_fixes_the_examples(tiny_config):
    from ftsweep.trial.hf_trainer import training_arguments

    one, two = tiny_config("train.seed=1"), tiny_config("train.seed=2")
    assert training_arguments(one, "/tmp/x", False).data_seed == 1
    assert training_arguments(two, "/tmp/x", False).data_seed == 2
    examples = [three_way_split(get_task(c.data), c.data) for c in (one, two)]
    assert [example_id(e) for e in examples[0].test] == [example_id(e) for e in examples[1].test]


def test_a_finished_run_records_intervals_test_quality_inputs_and_scores(tiny_config):
    from ftsweep.tracking.store import get_client, tracking_uri
    from ftsweep.trial.run import run_trial

    cfg = tiny_config("sweep.name=record-intervals")
    result = run_trial(cfg)
    client = get_client(tracking_uri(cfg))
    run = client.get_run(result.run_id)
    m = run.data.metrics
    assert m["quality_ci_low"] <= m["quality"] <= m["quality_ci_high"]
    assert m["test_quality_ci_low"] <= m["test_quality"] <= m["test_quality_ci_high"]
    assert m["num_eval_examples"] + m["num_test_examples"] == 8  # data.num_eval + num_test
    assert run.data.tags[TAG_INPUTS] == inputs_id(run.data.params)
    path = client.download_artifacts(result.run_id, "scores/scores.json")
    scores = json.loads(open(path).read())
    assert len(scores["validation"]["scores"]) == m["num_eval_examples"]
    assert len(scores["test"]["ids"]) == m["num_test_examples"]
    mean = sum(scores["test"]["scores"]) / len(scores["test"]["scores"])
    assert mean == pytest.approx(m["test_quality"])
