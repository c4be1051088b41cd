"""A sweep's budget check reads the real MLflow store and records what it skipped."""

from __future__ import annotations

from ftsweep.sweep.trainable import budget_block
from ftsweep.tracking.record import TAG_ERROR, TAG_STOP_REASON
from ftsweep.tracking.store import get_client, tracking_uri
from ftsweep.trial.identity import run_name_for, trial_id_for
from ftsweep.trial.run import run_trial, skip_trial


def test_trial_over_budget_is_skipped_and_recorded(tiny_config):
    first = tiny_config("sweep.name=budget", "method=lora")
    spent = run_trial(first).metrics["cost_usd"]

    # Room for about half of another run: the next trial must not start.
    nxt = tiny_config(
        "sweep.name=budget", "method=lora", "train.seed=1", f"++sweep.budget_usd={spent * 1.5}"
    )
    reason = budget_block(nxt, trial_id_for(nxt))
    assert reason is not None and "sweep.budget_usd" in reason

    result = skip_trial(nxt, trial_id_for(nxt), run_name_for(nxt), "test", reason)
    assert result.status == "KILLED"
    run = get_client(tracking_uri(nxt)).get_run(result.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[TAG_STOP_REASON] == "skipped_budget"
    assert "sweep.budget_usd" in run.data.tags[TAG_ERROR]

    # With room for it, the same trial may start; the finished one never counts against itself.
    roomy = tiny_config(
        "sweep.name=budget", "method=lora", "train.seed=1", f"++sweep.budget_usd={spent * 10}"
    )
    assert budget_block(roomy, trial_id_for(roomy)) is None
    again = tiny_config("sweep.name=budget", "method=lora", f"++sweep.budget_usd={spent * 0.1}")
    assert budget_block(again, trial_id_for(again)) is None
