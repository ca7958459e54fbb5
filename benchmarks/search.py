"""Searches through Ray Tune with tune-lab's own settings: ASHA against FIFO, and Ray's cost per trial.

Both sections start one local Ray the way `tune-lab` does (`runner.start_ray`: all the
machine's CPUs, 1 CPU per trial) and share it across repetitions, so `ray.init` (~5 s,
reported apart) is not charged to any search.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from benchmarks.timing import case_row, interleave, target

SPACE = "lr_optimizer"  # search_spaces/mlp/lr_optimizer.yaml: 18 random (lr, optimizer) trials, 9 epochs
MAX_EPOCH_SHARE = 0.40  # ASHA may spend at most 40% of FIFO's trial-epochs ...
MAX_ACC_GAP = 0.003  # ... and find a best validation accuracy within 0.3 points of FIFO's
MAX_OVERHEAD_S = 1.5  # Ray's cost per trial slot


@contextlib.contextmanager
def started_ray():
    """A local Ray as tune-lab starts it, shut down afterwards if this started it."""
    from tune_lab.runner import start_ray

    began = time.perf_counter()
    mine = start_ray(None)
    try:
        yield time.perf_counter() - began
    finally:
        if mine:
            import ray

            ray.shutdown()


def _search_once(scheduler: str, subset: int, epochs: int, data_dir: str | None, root: str) -> dict[str, Any]:
    """One full `tune-lab mlp --search lr_optimizer --scheduler ...` run, as the CLI runs it.

    Every repetition shares one results root (and so one MLflow store), as a user's searches
    do: MLflow keeps its SQLite engines per process, and a store deleted under it goes read-only.
    """
    from tune_lab.runner import SearchOptions, run_search
    from tune_lab.spaces import load_search

    search = load_search(SPACE, "mlp", {"epochs": epochs})
    with contextlib.redirect_stdout(sys.stderr):
        summary = run_search(search, SearchOptions(
            dataset="mnist", data_dir=data_dir, subset=subset, storage=root, seed=0, scheduler=scheduler,
            experiment=f"bench-{scheduler}-{time.strftime('%H%M%S')}-{os.urandom(2).hex()}",
        ))
    trials = summary["trials"]
    return {
        "trial_epochs": sum(t["epochs_run"] for t in trials),
        "best_val_acc": summary["best"]["metrics"]["val_acc"],
        "best_setting": summary["best"]["setting"],
        "trial_compute_s": sum(t.get("wall_time_s") or 0.0 for t in trials),
        "errored": sum(t["status"] == "errored" for t in trials),
    }


SCHEDULERS = ("fifo", "asha", "promotion")  # promotion: tune_lab.schedulers.PromotionASHA with the file's rungs


def run_asha(quick: bool, reps: int, data_dir: str | None = None) -> dict[str, Any]:
    """FIFO, ASHA and promotion-ASHA searches of the same space, interleaved; trial-epochs, wall time, best val acc."""
    subset, epochs = (1024, 3) if quick else (2048, 9)
    with started_ray() as init_s, tempfile.TemporaryDirectory(prefix="tune-lab-bench-") as root:
        timings = interleave(
            {name: (lambda n=name: _search_once(n, subset, epochs, data_dir, root)) for name in SCHEDULERS},
            reps, warmup=0,
        )
    rows, figures = [], {}
    for name, secs in timings.seconds.items():
        runs = timings.returned[name]
        figures[name] = {
            "trial_epochs": statistics.median(r["trial_epochs"] for r in runs),
            "best_val_acc": statistics.median(r["best_val_acc"] for r in runs),
        }
        rows.append(case_row(
            name, secs, trial_epochs=figures[name]["trial_epochs"], best_val_acc=round(figures[name]["best_val_acc"], 4),
            trial_epochs_reps=[r["trial_epochs"] for r in runs], best_val_acc_reps=[round(r["best_val_acc"], 4) for r in runs],
            best_settings=[r["best_setting"] for r in runs], errored=sum(r["errored"] for r in runs),
            trial_compute_s=round(statistics.median(r["trial_compute_s"] for r in runs), 2),
        ))
    from tune_lab.spaces import load_search

    asha_args = load_search(SPACE, "mlp", {}).scheduler_args
    share = figures["asha"]["trial_epochs"] / figures["fifo"]["trial_epochs"]
    gap = figures["fifo"]["best_val_acc"] - figures["asha"]["best_val_acc"]
    promotion_share = figures["promotion"]["trial_epochs"] / figures["fifo"]["trial_epochs"]
    promotion_gap = figures["fifo"]["best_val_acc"] - figures["promotion"]["best_val_acc"]
    return {
        "name": "asha",
        "title": "ASHA and promotion ASHA vs FIFO: mlp lr x optimizer, 18 random trials (seed 0), on an MNIST subset",
        "settings": {"search": f"search_spaces/mlp/{SPACE}.yaml", "dataset": "mnist", "subset": subset,
                     "epochs": epochs, "asha": asha_args, "cpus_per_trial": 1,
                     "reps": reps, "ray_init_s": round(init_s, 2)},
        "cases": rows,
        "ratios": {"asha_trial_epochs_over_fifo": round(share, 3),
                   "asha_wall_over_fifo": round(timings.median("asha") / timings.median("fifo"), 3),
                   "fifo_minus_asha_best_val_acc": round(gap, 4),
                   "promotion_trial_epochs_over_fifo": round(promotion_share, 3),
                   "promotion_wall_over_fifo": round(timings.median("promotion") / timings.median("fifo"), 3),
                   "fifo_minus_promotion_best_val_acc": round(promotion_gap, 4)},
        "targets": [
            target("asha: trial-epochs / FIFO's", share, "<=", MAX_EPOCH_SHARE),
            target("asha: FIFO's best val acc - ASHA's (points)", 100 * gap, "<=", 100 * MAX_ACC_GAP),
            target("promotion: trial-epochs / FIFO's", promotion_share, "<=", MAX_EPOCH_SHARE),
            target("promotion: FIFO's best val acc - promotion's (points)", 100 * promotion_gap, "<=", 100 * MAX_ACC_GAP),
        ],
        "notes": ["wall time is the whole `run_search` (data load, trials, MLflow, summary and report), Ray already up",
                  "trial_epochs and best_val_acc: medians over repetitions (ASHA's promotions depend on trial timing)"],
    }


def _sleeper(config: dict[str, Any]) -> None:
    """A trial that only waits: all of its wall time beyond `seconds` is Ray's."""
    from ray import tune

    start = time.perf_counter()
    time.sleep(config["seconds"])
    tune.report({"slept_s": time.perf_counter() - start})


def _sleep_search(trials: int, seconds: float, root: str) -> dict[str, float]:
    """`trials` sleeping trials through a Tuner configured as tune_lab.runner configures it."""
    from ray import tune

    from tune_lab.tracking import Store

    # One results root and MLflow store for every repetition (see _search_once); a new run name each time.
    name = f"sleep-{os.urandom(3).hex()}"
    parent = Store(f"sqlite:///{root}/mlflow.db", "bench", None).start_run(name, tags={})
    tuner = tune.Tuner(
        tune.with_resources(_sleeper, {"cpu": 1.0, "gpu": 0.0}),
        param_space={"seconds": seconds, "i": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(metric="slept_s", mode="min", num_samples=1, reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=root, callbacks=[parent.trial_callback()], verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="slept_s",
                                                    checkpoint_score_order="min"),
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    parent.end(failed=False)
    return {"wall_s": wall, "trial_s": sum(r.metrics["slept_s"] for r in grid)}


def run_overhead(quick: bool, reps: int) -> dict[str, Any]:
    """Wall time of a sleeping search against the sum of its trials' times; overhead per trial."""
    import ray

    trials, seconds = (6, 0.5) if quick else (20, 1.0)
    with started_ray() as init_s, tempfile.TemporaryDirectory(prefix="tune-lab-bench-") as root:
        slots = int(ray.cluster_resources().get("CPU", 1))
        timings = interleave({"sleep_search": lambda: _sleep_search(trials, seconds, root)}, reps, warmup=0)
    runs = timings.returned["sleep_search"]
    # Per trial: (slots x wall - sum of trial times) / trials, i.e. each slot's idle-for-Ray time per trial it ran.
    per_trial = [(slots * r["wall_s"] - r["trial_s"]) / trials for r in runs]
    overhead = statistics.median(per_trial)
    return {
        "name": "ray",
        "title": f"Ray Tune overhead: {trials} trials sleeping {seconds:g} s, {slots} at a time",
        "settings": {"trials": trials, "sleep_s": seconds, "slots": slots, "reuse_actors": True, "cpus_per_trial": 1,
                     "mlflow_callback": True, "reps": reps, "ray_init_s": round(init_s, 2)},
        "cases": [case_row("sleep_search", [r["wall_s"] for r in runs],
                           trial_s=round(statistics.median(r["trial_s"] for r in runs), 2),
                           ideal_s=round(trials * seconds / slots, 2),
                           overhead_per_trial_s=round(overhead, 3),
                           overhead_per_trial_reps=[round(v, 3) for v in per_trial])],
        "ratios": {"overhead_per_trial_s": round(overhead, 3)},
        "targets": [target("ray: overhead seconds per trial", overhead, "<=", MAX_OVERHEAD_S)],
        "notes": ["Tuner as tune_lab.runner builds it: reuse_actors=True, 1 CPU per trial, MLflow trial callback, "
                  "CheckpointConfig(num_to_keep=1); verbose=0 (no progress table)",
                  "wall time is tuner.fit() only; ray.init is reported as ray_init_s"],
    }
