"""The example cluster (deploy/ray-cluster.yaml) is one Ray's cluster launcher accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).parents[1] / "deploy" / "ray-cluster.yaml"


def _checked(config: dict) -> dict:
    """What `ray up` does first: fill in the provider's defaults, then check the result against
    the installed Ray's schema (ray/autoscaler/ray-schema.json) and its own rules."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    full = prepare_config(config)
    validate_config(full)
    return full


def test_the_example_cluster_passes_the_launchers_schema():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    full = _checked(config)
    assert full["head_node_type"] == "head"
    # Ray runs with token authentication on every node.
    starts = full["head_start_ray_commands"] + full["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in cmd for cmd in starts if "ray start" in cmd)


def test_a_misspelt_key_is_refused():
    from jsonschema import ValidationError

    config = yaml.safe_load(CLUSTER_YAML.read_text())
    config["available_node_types"]["a100"]["min_worker"] = 0  # min_workers
    with pytest.raises(ValidationError, match="min_worker"):
        _checked(config)
