"""Where a trial ran: every attempt's run names the Ray node it ran on."""

from __future__ import annotations

import sys

from ftsweep.tracking import record
from ftsweep.tracking.record import TAG_NODE, TAG_NODES, TrialRun
from ftsweep.tracking.store import get_client, tracking_uri


def test_every_attempt_records_the_ray_node_it_ran_on(tiny_config, monkeypatch):
    cfg = tiny_config("sweep.name=nodes")
    monkeypatch.setattr(record, "ray_node", lambda: "198.18.0.3/1a2b3c4d")
    first = TrialRun(cfg, "trial-n", "run n", invocation_id="driver")
    # That node was lost; the retry runs elsewhere and reopens the same run.
    monkeypatch.setattr(record, "ray_node", lambda: "198.18.0.4/5e6f7a8b")
    second = TrialRun(cfg, "trial-n", "run n", invocation_id="driver")
    assert second.run_id == first.run_id and second.failures == 1
    tags = get_client(tracking_uri(cfg)).get_run(first.run_id).data.tags
    assert tags[TAG_NODE] == "198.18.0.4/5e6f7a8b"
    assert tags[TAG_NODES] == "198.18.0.3/1a2b3c4d,198.18.0.4/5e6f7a8b"


def test_outside_ray_no_node_is_named(tiny_config, monkeypatch):
    # A process Ray did not start has not imported it (`ftsweep train`).
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    assert record.ray_node() is None
    cfg = tiny_config("sweep.name=no-ray")
    run = TrialRun(cfg, "trial-local", "run", invocation_id="train")
    tags = get_client(tracking_uri(cfg)).get_run(run.run_id).data.tags
    assert TAG_NODE not in tags and TAG_NODES not in tags


def test_a_ray_worker_names_the_address_its_node_registered_with():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        named = ray.get(ray.remote(num_cpus=0)(record.ray_node).remote())
        (node,) = [n for n in ray.nodes() if n["Alive"]]
        assert named == f"{node['NodeManagerAddress']}/{node['NodeID'][:8]}"
    finally:
        if started:
            ray.shutdown()
