"""What a search can count on: the cluster's resources now, and what its autoscaler may add.

Why: on an autoscaling cluster (cluster.yaml: GPU workers with `min_workers: 0`) the GPU nodes
do not exist until trials ask for them. Counted at start, such a cluster has no GPU, so a search
would reserve none and run one trial at a time (Optuna's and promotion ASHA's concurrency
follow the slots). The slots follow what the cluster can grow to instead: `--max-concurrent`
where given, else the autoscaler's own config, which `ray up` leaves on the head (where
`tune-lab submit` runs the driver).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

AUTOSCALER_CONFIG = "~/ray_bootstrap_config.yaml"  # written by `ray up` on the head, read by its autoscaler


def autoscaler_workers(config_file: str = AUTOSCALER_CONFIG) -> dict[str, float] | None:
    """The CPUs and GPUs of every worker the autoscaler may start (None: no readable config here).

    Each worker type's `resources` times its `max_workers`, taking the largest nodes first while
    the cluster's own `max_workers` allows: the most the autoscaler can add.
    """
    path = Path(config_file).expanduser()
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict) or not isinstance(config.get("available_node_types"), dict):
        return None
    head = config.get("head_node_type")
    budget = config.get("max_workers", math.inf)
    kinds = [(node.get("resources") or {}, int(node.get("max_workers", 0)))
             for name, node in config["available_node_types"].items() if name != head and isinstance(node, dict)]
    total = {"CPU": 0.0, "GPU": 0.0}
    for resources, count in sorted(kinds, key=lambda kind: -float(kind[0].get("GPU", 0))):
        count = min(count, budget)
        budget -= count
        for key in total:
            total[key] += float(resources.get(key, 0)) * count
    return total


def capacity(now: dict[str, Any], workers: dict[str, float] | None) -> dict[str, float]:
    """Per kind, the larger of what the cluster has now and what the autoscaler can add."""
    return {kind: max(float(now.get(kind, 0.0)), (workers or {}).get(kind, 0.0)) for kind in ("CPU", "GPU")}


def slots(resources: dict[str, float], reach: dict[str, float]) -> int:
    """How many trials asking `resources` fit in `reach` at once (at least one)."""
    limits = [reach["CPU"] / resources["cpu"]] if resources["cpu"] else []
    if resources["gpu"]:
        limits.append(reach["GPU"] / resources["gpu"])
    return max(1, int(min(limits))) if limits else 1
