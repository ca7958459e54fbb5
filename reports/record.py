"""A finished search as one record (the shape of summary.json, typed here), however it was read.

tune_lab builds it from Ray's ResultGrid at the end of a search; the report generator
rebuilds it from MLflow later. Both go through `trial_row`, so a row means the same thing
wherever it came from. The record stays a dict of JSON values (TypedDicts, a str enum): summary.json
keeps its keys and words, and old results folders read as they did.
"""
from __future__ import annotations

import enum
import math
import numbers
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Required, TypedDict

from labspec.config import BETTER, per_seed_key

if TYPE_CHECKING:
    import pandas as pd

TRIAL_EXTRAS = ("epoch_time_s", "samples_per_s")


class Status(enum.StrEnum):
    """How a trial ended, in the words summary.json, the tables, the figures and MLflow's tag write: said here
    only. A str, so a row read back from JSON compares equal to its member."""

    COMPLETED = "completed"  # every planned epoch
    STOPPED_EARLY = "stopped early"  # by the scheduler (ASHA's verdict), before its planned epochs
    ERRORED = "errored"
    INTERRUPTED = "interrupted"  # the search was cut off after some of its epochs: `tune-lab resume` goes on
    NOT_RUN = "not run"  # the search was cut off before it reported


class Header(TypedDict):
    """The search-level facts (tune_lab.runner.search_header), also the MLflow parent run's spec tag."""

    experiment: str
    lab: str
    search: str
    search_file: str
    description: str
    dataset: str
    metric: str
    mode: Literal["max", "min"]
    metrics: list[str]
    varied: list[str]  # the config keys a trial's setting names
    sweeps: dict[str, list[Any]]
    variants: dict[str, dict[str, Any]]
    params: dict[str, dict[str, Any]]  # name -> {distribution: its arguments}
    fixed: dict[str, Any]
    algorithm: str
    scheduler: str
    scheduler_args: dict[str, Any]
    rungs: list[int]
    rung_caps: list[int]
    storage: str
    repeats: int
    subset: int | None
    lab_source: str | None


class TrialRow(TypedDict, total=False):
    """One trial (`trial_row`); a trial that never reported has only the Required keys."""

    trial_id: Required[str]
    setting: Required[dict[str, Any]]
    config: Required[dict[str, Any]]
    epochs_planned: Required[int | None]
    epochs_run: Required[int]
    status: Required[Status]
    error: Required[str | None]
    best_epoch: int
    best: dict[str, Any]  # its metrics at best_epoch
    last: dict[str, Any]
    wall_time_s: float | None
    history: dict[str, list[Any]]
    repeats: int
    seed_history: dict[str, dict[str, list[Any]]]
    seeds: dict[str, dict[str, Any]]
    seed_stats: dict[str, Any]  # reports.seeds
    verdict: dict[str, Any] | None
    path: str
    mlflow_run_id: str | None
    checkpoint: str
    schedule: list[dict[str, Any]]  # promotion ASHA's events
    retries: int  # tune_lab.placement
    nodes: list[str]
    attempts: list[dict[str, Any]]


class BestPick(TypedDict):
    """The trial the search picked (`pick_best`), at its selected epoch."""

    trial_id: str
    config: dict[str, Any]
    setting: dict[str, Any]
    epoch: int
    metrics: dict[str, Any]
    checkpoint: str | None
    mlflow_run_id: str | None


class Summary(Header, total=False):
    """summary.json: the header, the best trial and every trial's row, with what a search adds as it ends."""

    mlflow: Required[dict[str, Any]]
    best: Required[BestPick | None]
    trials: Required[list[TrialRow]]
    source: str  # "mlflow" when rebuilt from the tracking store
    node_lost: str
    driver_s: dict[str, float]
    complete: bool
    interrupted: bool


def typed(record: dict[str, Any]) -> Summary:
    """A record read back (summary.json, MLflow) as a Summary: each row's status made its Status, in place;
    a word no version of tune-lab wrote is refused here, not misread in a figure."""
    for row in record.get("trials", []):
        row["status"] = Status(row["status"])
    return record  # type: ignore[return-value]


def clean(value: Any) -> Any:
    """JSON has no NaN/inf; numpy scalars become plain numbers."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def trial_row(
    *,
    trial_id: str,
    config: dict[str, Any],
    history: pd.DataFrame | None,
    failed: bool,
    error: str | None,
    metric: str,
    mode: str,
    metrics: list[str],
    varied: list[str],
) -> TrialRow:
    """One trial: its setting, status, best epoch (by the searched metric) and full history.

    `history` has one row per epoch with a `training_iteration` column.
    """
    row: TrialRow = {
        "trial_id": trial_id,
        "setting": {k: config.get(k) for k in varied},
        "config": {k: clean(v) for k, v in config.items()},
        "epochs_planned": config.get("epochs"),
        "epochs_run": 0,
        "status": end_status(failed, 0, None),
        "error": error,
    }
    if history is None or history.empty or metric not in history or history[metric].isna().all():
        if not failed:
            row["status"] = Status.NOT_RUN
        return row
    # A trial resumed from an earlier checkpoint reports some epochs again: the rerun, which the
    # model went on from, replaces the first report (as MLflow's latest value per step does).
    history = history.drop_duplicates("training_iteration", keep="last").sort_values("training_iteration")
    row["epochs_run"] = int(history["training_iteration"].max())
    row["status"] = end_status(failed, row["epochs_run"], row["epochs_planned"])
    values = history[metric].tolist()
    best = history.iloc[best_of(range(len(values)), values.__getitem__, mode)]
    row["best_epoch"] = int(best["training_iteration"])
    row["best"] = {m: clean(best[m]) for m in (*metrics, *TRIAL_EXTRAS) if m in best}
    row["last"] = {m: clean(history[m].iloc[-1]) for m in metrics if m in history}
    row["wall_time_s"] = clean(history["epoch_time_s"].sum()) if "epoch_time_s" in history else None
    row["history"] = {
        m: [clean(v) for v in history[m]] for m in ("training_iteration", *metrics, "epoch_time_s") if m in history
    }
    seeds = seeds_in(history.columns)
    if seeds:  # a repeated search: each seed's history, and its values at the selected epoch
        row["repeats"] = config.get("repeats", len(seeds))
        row["seed_history"] = {
            str(seed): {m: [clean(v) for v in history[key]] for m in metrics if (key := per_seed_key(m, seed)) in history}
            for seed in seeds
        }
        row["seeds"] = {
            m: {str(seed): clean(best[per_seed_key(m, seed)]) for seed in seeds if per_seed_key(m, seed) in best}
            for m in metrics
        }
    return row


def end_status(failed: bool, epochs_run: int, epochs_planned: Any) -> Status:
    """How a trial that ran ended (the scheduler stopped it if it ran fewer epochs than planned): decided here only."""
    if failed:
        return Status.ERRORED
    return Status.STOPPED_EARLY if epochs_planned and epochs_run < epochs_planned else Status.COMPLETED


def seeds_in(columns: Any) -> list[int]:
    """The seeds whose metrics a history holds ('val_acc/seed_3' -> 3), in order."""
    return sorted({int(c.rsplit("/seed_", 1)[1]) for c in columns if "/seed_" in c and c.rsplit("/seed_", 1)[1].isdigit()})


def in_trial_order(rows: list[TrialRow]) -> list[TrialRow]:
    """One order wherever the rows came from: the order the searcher made the trials, the number Ray puts in each
    trial's folder name (`run_trial_<id>_<number>_<params>...`), then the trial id (which numbers grid trials in
    order, but is a random one for Optuna's: ordered by id alone, two runs of one search listed the same trials
    in different orders)."""
    def number(row: TrialRow) -> int:
        name = Path(str(row.get("path") or "")).name
        head = name.split(f"_{row['trial_id']}_", 1)[1].split("_", 1)[0] if f"_{row['trial_id']}_" in name else ""
        return int(head) if head.isdigit() else -1

    return sorted(rows, key=lambda r: (number(r), str(r["trial_id"])))


def pick_best(rows: list[TrialRow], metric: str, mode: str) -> BestPick | None:
    best = best_of(rows, lambda r: (r.get("best") or {}).get(metric), mode)  # ties: the first in trial order
    if best is None:
        return None
    return {
        "trial_id": best["trial_id"], "config": best["config"], "setting": best["setting"],
        "epoch": best["best_epoch"], "metrics": best["best"], "checkpoint": best.get("checkpoint"),
        "mlflow_run_id": best.get("mlflow_run_id"),
    }


def best_of(items: Iterable[Any], score: Callable[[Any], Any], mode: str) -> Any:
    """The first of `items` that no later one beats (labspec.config.BETTER); one scoring None or NaN is passed over."""
    best, best_score = None, None
    for item in items:
        value = score(item)
        if isinstance(value, numbers.Real) and value == value and (best is None or BETTER[mode](value, best_score)):
            best, best_score = item, value
    return best


def best_checkpoint(kept: list[tuple[Any, dict[str, Any]]], metric: str, mode: str) -> Any:
    """Of a trial's kept (checkpoint, metrics) pairs, the one of its best epoch (ties: the earliest, as the best
    epoch); None when none has the metric. With promotion ASHA the latest may be a rung checkpoint kept for resuming."""
    in_order = sorted(kept, key=lambda cm: cm[1].get("training_iteration", 0))
    found = best_of(in_order, lambda cm: cm[1].get(metric), mode)
    return None if found is None else found[0]
