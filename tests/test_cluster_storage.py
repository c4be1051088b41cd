"""Trial state in an object store (`storage=URI`): a trial retried on another node resumes from
the checkpoint its lost node published, with nothing left on that node's disk.

pyarrow's `file://` file system stands in for S3 here (the same calls; the cluster test runs an
S3 server)."""

from __future__ import annotations

import shutil
import tempfile

import pytest

import ftsweep.trial.recipe as recipe
from ftsweep.tracking.record import TAG_FAILURES, TAG_RESUMED_FROM
from ftsweep.tracking.store import get_client, tracking_uri
from ftsweep.trial.checkpoints import checkpoint_dir, checkpoint_uri, state_location
from ftsweep.trial.identity import trial_id_for
from ftsweep.trial.manifest import MANIFEST_NAME
from ftsweep.trial.run import run_trial


class NodeLost(RuntimeError):
    pass


def test_state_lives_under_storage_when_there_is_one(tiny_config, tmp_path):
    local = tiny_config()
    assert state_location(local, "ray") == str(local.results_path / "ray")
    assert checkpoint_uri(local, "t") is None
    remote = tiny_config("storage=s3://bucket/sweeps/")
    assert state_location(remote, "ray-train") == "s3://bucket/sweeps/ray-train"
    assert checkpoint_uri(remote, "t") == "s3://bucket/sweeps/checkpoints/adhoc/t"
    # The folder a trial writes into is this node's scratch, not RESULTS.
    assert checkpoint_dir(remote, "t").is_relative_to(tempfile.gettempdir())


@pytest.mark.slow
def test_a_trial_retried_on_another_node_resumes_from_the_stored_checkpoint(
    tiny_config, tmp_path, monkeypatch
):
    store = tmp_path / "store"
    store.mkdir()
    cfg = tiny_config(
        "sweep.name=stored",
        "train.max_steps=4",
        "train.checkpoint_every=2",
        f"storage={store.as_uri()}",
    )
    trial_id = trial_id_for(cfg)
    node_a, node_b = tmp_path / "node-a", tmp_path / "node-b"
    node_a.mkdir()
    node_b.mkdir()
    real_trainer_class = recipe.trainer_class

    def dies_in_step_3():
        class Dies(real_trainer_class()):
            def training_step(self, *args, **kwargs):
                if self.state.global_step == 2:
                    raise NodeLost("node a was lost in step 3")
                return super().training_step(*args, **kwargs)

        return Dies

    monkeypatch.setattr(tempfile, "tempdir", str(node_a))  # node a's TMPDIR
    monkeypatch.setattr(recipe, "trainer_class", dies_in_step_3)
    with pytest.raises(NodeLost):
        run_trial(cfg)
    kept = store / "checkpoints" / "stored" / trial_id
    assert [p.name for p in kept.iterdir()] == ["checkpoint-2"]
    assert (kept / "checkpoint-2" / MANIFEST_NAME).exists()
    shutil.rmtree(node_a)  # the node is gone, and its disk with it

    monkeypatch.setattr(tempfile, "tempdir", str(node_b))
    monkeypatch.setattr(recipe, "trainer_class", real_trainer_class)
    result = run_trial(cfg)
    assert result.status == "FINISHED"
    client = get_client(tracking_uri(cfg))
    tags = client.get_run(result.run_id).data.tags
    assert (tags[TAG_FAILURES], tags[TAG_RESUMED_FROM]) == ("1", "2")
    steps = sorted(m.step for m in client.get_metric_history(result.run_id, "train_loss"))
    assert steps == [1, 2, 3, 4]
    # Finished: no checkpoint is kept, here or in the store.
    assert not kept.exists() and not checkpoint_dir(cfg, trial_id).exists()
