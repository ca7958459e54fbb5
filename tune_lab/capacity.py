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
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tune_lab.usage import UsageError

if TYPE_CHECKING:
    from tune_lab.options import SearchOptions

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


# The most CPUs (threads) a trial takes when --cpus-per-trial is not given. Measured on a 2-core machine, idle
# (issue 32): a second thread makes the lab 1 MLP's batch-256 training pass 1.3x faster (1.8-1.9 s -> 1.35-1.5 s)
# and a ResNet18 step at batch 64 1.4x (0.54-0.56 s -> 0.38-0.39 s). Beyond two it is not measured here; four
# keeps a trial's share of a laptop's cores where intra-op threads still pay for small batches.
MAX_DEFAULT_THREADS = 4


def default_cpus(machine_cpus: float, trials: int | None) -> float:
    """A trial's CPUs when --cpus-per-trial is not given: the machine's CPUs spread over the trials that can run at
    once, whole, at least one, at most MAX_DEFAULT_THREADS. A one-trial search takes every core (up to the cap); the
    main job's three trials on 8 cores take 2 each, on 2 cores 1 each. It depends on the search and the machine, not
    on --max-concurrent: the thread count is part of what the trials compute, and one slot must give the same table."""
    cores = max(1, int(machine_cpus))
    at_once = max(1, min(trials or cores, cores))
    return float(max(1, min(cores // at_once, MAX_DEFAULT_THREADS)))


def slots(resources: dict[str, float], reach: dict[str, float]) -> int:
    """How many trials asking `resources` fit in `reach` at once (at least one)."""
    limits = [reach["CPU"] / resources["cpu"]] if resources["cpu"] else []
    if resources["gpu"]:
        limits.append(reach["GPU"] / resources["gpu"])
    return max(1, int(min(limits))) if limits else 1


# The cluster admin's cap on one job's concurrent trials, set in the head's environment (cluster.yaml's
# `ray start`, the RayJob's head container), which every job's driver on the head inherits.
JOB_CAP_ENV = "TUNE_LAB_MAX_TRIALS_PER_JOB"


def job_cap(requested: int | None) -> int | None:
    """How many trials this search may run at once: `requested` (--max-concurrent), held to the admin's
    per-job cap where the head sets one.

    Why: on a class's cluster, one student's 200-trial search would otherwise take every slot as it
    comes free, and the searches submitted after it wait for hours. A student may ask for fewer than
    the cap (Optuna learns from more finished trials), never more. One line says which applied.
    """
    import os
    import sys

    raw = os.environ.get(JOB_CAP_ENV, "").strip()
    if not raw:
        return requested
    try:
        cap = int(raw)
        if cap < 1:
            raise ValueError
    except ValueError:
        print(f"tune-lab: {JOB_CAP_ENV}={raw!r} on this head is not a positive whole number: no per-job cap applied",
              file=sys.stderr, flush=True)
        return requested
    if requested is not None and requested <= cap:
        return requested
    said = f"--max-concurrent {requested} lowered to" if requested else "at most"
    print(f"tune-lab: {said} {cap} trial(s) at once: this cluster's per-job cap ({JOB_CAP_ENV})", file=sys.stderr, flush=True)
    return cap


def trial_resources(opts: SearchOptions, trials: int, gpu_fraction: float,
                    now: dict[str, float] | None = None) -> tuple[dict[str, float], int]:
    """Each trial's CPUs and GPUs, and how many trials can run at once: `trials`, the trials the search starts;
    `gpu_fraction`, the lab's GPU share; `now`, the cluster's resources (None: ask the Ray this driver joined)."""
    if now is None:
        import ray

        now = ray.cluster_resources()
    workers = autoscaler_workers() if opts.address else None
    reach = capacity(now, workers)
    if opts.cpus_per_trial is not None:
        cpus = opts.cpus_per_trial
    elif opts.address:  # a cluster's CPUs are spread over its nodes, and a trial runs on one: one each
        cpus = 1.0
    else:
        cpus = default_cpus(now.get("CPU", 1.0), trials)
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else (gpu_fraction if reach["GPU"] else 0.0)
    resources = {"cpu": cpus, "gpu": gpus}
    short = [(flag, wanted, kind) for flag, wanted, kind in (("--gpus-per-trial", gpus, "GPU"), ("--cpus-per-trial", cpus, "CPU"))
             if wanted > now.get(kind, 0.0)]
    if short and not opts.address:
        flag, wanted, kind = short[0]
        raise UsageError(f"{flag} {wanted:g}: the cluster has {now.get(kind, 0.0):g} {kind}(s)")
    n = slots(resources, reach)
    if short:  # a joined cluster may autoscale: its GPU workers often do not exist until trials ask
        flag, wanted, kind = short[0]
        if opts.max_concurrent:
            n = opts.max_concurrent
            how = f"{n} trial(s) at once (--max-concurrent)"
        elif workers is not None and reach[kind] >= wanted:
            how = f"up to {n} trial(s) at once as its autoscaler adds nodes (its config allows {reach[kind]:g} {kind}s)"
        else:  # the autoscaler's limits are not readable from this driver (KubeRay, a laptop)
            n = trials or n
            how = f"up to {n} trial(s) at once as nodes arrive; pass --max-concurrent N to hold it to N"
        print(f"tune-lab: {flag} {wanted:g}, but the cluster has {now.get(kind, 0.0):g} {kind}(s) now: trials wait "
              f"for its autoscaler to add nodes that have them; {how}", file=sys.stderr, flush=True)
    return resources, n
