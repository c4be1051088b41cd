"""Results belong to their inputs: runs with different `ftsweep.inputs` are never compared, in
the report (one report per set of inputs, and an index), the end-of-sweep summary and the
default adapter to merge."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from test_report_store import Store, right

from ftsweep.adapters.listing import NoDefaultRun, recommended_adapter_run
from ftsweep.config import ConfigError
from ftsweep.report.analysis import analyse, analyse_all
from ftsweep.report.inputs import inputs_key, split_by_inputs
from ftsweep.report.runs import load_rows
from ftsweep.report.write import write_report
from ftsweep.sweep.run import SweepOutcome
from ftsweep.sweep.summary import print_summary


@pytest.fixture
def two_inputs(tmp_path):
    """The same sweep run on medium and on hard data: on medium QLoRA is best, on hard LoRA."""
    s = Store(tmp_path)
    s.base(right(0), inputs="in-medium")
    s.run("lora", right(20), r=16, inputs="in-medium", name="medium lora")
    s.run("qlora", right(31), r=16, inputs="in-medium", name="medium qlora")
    s.base(right(0), inputs="in-hard", difficulty="hard")
    s.run("lora", right(30), r=16, inputs="in-hard", difficulty="hard", name="hard lora")
    s.run("qlora", right(5), r=16, inputs="in-hard", difficulty="hard", name="hard qlora")
    return s


def test_runs_are_grouped_by_their_inputs_tag(two_inputs):
    groups = split_by_inputs(load_rows(two_inputs.uri, "sweep"))
    assert [(g.id, len(g.rows)) for g in groups] == [("in-medium", 3), ("in-hard", 3)]
    assert all(g.tagged for g in groups)
    assert groups[1].describe()["difficulty"] == "hard"
    analyses = analyse_all(two_inputs.uri, "sweep")
    picks = {a.inputs.id: a.recommendation.run.name for a in analyses}
    assert picks == {"in-medium": "medium qlora", "in-hard": "hard lora"}
    assert all(a.baseline is not None for a in analyses)  # each set's own base model


def test_runs_without_the_tag_are_grouped_by_model_and_data_params():
    old_base = {"method": "none", "model": "m", "data": "format", "max_new_tokens": "48"}
    old_trial = {"method": "lora", "model": "m", "data": "format", "learning_rate": "1e-3"}
    other_data = {"method": "lora", "model": "m", "data": "domain"}
    key = inputs_key({}, old_base)
    assert key == inputs_key({}, old_trial) and key[1] is False
    assert inputs_key({}, other_data) != key
    assert inputs_key({"ftsweep.inputs": "abc"}, old_trial) == ("abc", True)


def test_several_inputs_give_an_index_and_one_report_each(two_inputs, tmp_path):
    out = tmp_path / "report"
    index = write_report(two_inputs.uri, "sweep", out).read_text()
    assert "on 2 different inputs" in index
    assert (
        "| in-medium | smollm2-135m (builtin:smollm2-135m, weights w1234) | format | medium |"
        in index
    )
    assert (
        "| in-hard | smollm2-135m (builtin:smollm2-135m, weights w1234) | format | hard |" in index
    )
    assert "- [inputs in-medium](in-medium/report.md)" in index
    assert '<a href="in-hard/report.html">inputs in-hard</a>' in (out / "report.html").read_text()
    medium = (out / "in-medium" / "report.md").read_text()
    hard = (out / "in-hard" / "report.md").read_text()
    assert "medium qlora" in medium and "hard lora" not in medium and "hard qlora" not in medium
    assert "hard lora" in hard and "medium" not in hard.replace("inputs in-medium", "")
    assert "**Use QLoRA" in medium and "**Use LoRA" in hard
    assert "trained and scored on 2 different inputs, which are never compared" in hard
    assert (out / "in-hard" / "plots" / "quality_vs_cost.png").exists()
    assert not (out / "plots" / "quality_vs_cost.png").exists()


def test_one_set_of_inputs_can_be_reported_alone(two_inputs, tmp_path):
    path = write_report(two_inputs.uri, "sweep", tmp_path, inputs="in-hard")
    assert path == tmp_path / "in-hard" / "report.md"
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "in-medium").exists()
    assert write_report(two_inputs.uri, "sweep", tmp_path, inputs="in-m") == (
        tmp_path / "in-medium" / "report.md"
    )  # a unique prefix of four or more characters
    with pytest.raises(ConfigError, match=r"inputs=nope matches none .*in-medium, in-hard"):
        write_report(two_inputs.uri, "sweep", tmp_path, inputs="nope")
    with pytest.raises(ConfigError, match=r"inputs=in- matches none"):
        write_report(two_inputs.uri, "sweep", tmp_path, inputs="in-")  # too short a prefix
    with pytest.raises(ConfigError, match=r"runs on 2 different inputs.*name one with inputs=ID"):
        analyse(two_inputs.uri, "sweep")
    assert analyse(two_inputs.uri, "sweep", inputs="in-hard").recommendation.run.name == "hard lora"


def test_one_set_of_inputs_is_reported_as_before(tmp_path):
    s = Store(tmp_path)
    s.base(right(0))
    s.run("lora", right(30), r=16)
    path = write_report(s.uri, "sweep", tmp_path / "out")
    assert path == tmp_path / "out" / "report.md"
    md = path.read_text()
    assert md.startswith("# Experiments per dollar: sweep sweep") and "**Use LoRA" in md
    assert "All runs here share their inputs inputs-a: model smollm2-135m" in md
    assert "different inputs" not in md
    assert write_report(s.uri, "sweep", tmp_path / "out", inputs="inputs-a") == path


def test_merge_has_no_default_across_inputs(two_inputs):
    with pytest.raises(
        NoDefaultRun, match="on 2 different inputs, never compared; name one with run=ID"
    ):
        recommended_adapter_run(load_rows(two_inputs.uri, "sweep"))


def _summary(store: Store) -> str:
    from rich.console import Console

    runs = sorted(store.client.search_runs([store.experiment_id]), key=lambda r: r.info.start_time)
    # The sweep's trials: the base model's run is measured beside them, not one of them.
    trials = [
        SimpleNamespace(trial_id=r.data.tags["ftsweep.trial_id"])
        for r in runs
        if r.data.params["method"] != "none"
    ]
    outcome = SweepOutcome("sweep", store.uri, trials, {}, {}, False)
    console = Console(record=True, width=250)
    print_summary(console, SimpleNamespace(results_dir=str(store.root)), outcome)
    return console.export_text()


def test_the_summary_prints_the_best_run_per_method_per_set_of_inputs(two_inputs):
    text = _summary(two_inputs)
    assert "the finished runs are on 2 different inputs, never compared" in text
    medium, hard = text.split("best run per method, inputs in-medium")[1].split(
        "best run per method, inputs in-hard"
    )
    assert "medium lora" in medium and "medium qlora" in medium
    assert "hard" not in medium.split("inputs in-medium:")[0]
    assert "hard lora" in hard and "hard qlora" in hard and "medium lora" not in hard
    assert "0.969 [" in medium and "0.938 [" in hard  # qualities with their intervals
    assert text.count("base model, untrained") == 2


def test_the_summary_of_one_set_of_inputs_is_one_table(tmp_path):
    s = Store(tmp_path)
    s.base(right(0))
    s.run("lora", right(30), r=16, wall=120)
    s.run("lora", right(31), r=16, seed=1, wall=121)
    text = _summary(s)
    assert "best run per method (2/2 trials finished)" in text
    assert "│ none " not in text  # the base model is the bar, not a method
    assert "different inputs" not in text
    assert (
        "0.969 [" in text
        and "base model, untrained, on format: quality 0.000 [0.000, 0.000]" in text
    )


TODAY = dt.date(2026, 12, 1)
