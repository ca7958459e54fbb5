"""A finished search as one plain dict (the shape of summary.json), however it was read.

tune_lab builds it from Ray's ResultGrid at the end of a search; the report generator
rebuilds it from MLflow later. Both go through `trial_row`, so a row means the same thing
wherever it came from.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from trainables.config import per_seed_key

if TYPE_CHECKING:
    import pandas as pd

TRIAL_EXTRAS = ("epoch_time_s", "samples_per_s")


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
) -> dict[str, Any]:
    """One trial: its setting, status, best epoch (by the searched metric) and full history.

    `history` has one row per epoch with a `training_iteration` column.
    """
    row: dict[str, Any] = {
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
            row["status"] = "not run"  # the search was interrupted before this trial reported
        return row
    # A trial resumed from an earlier checkpoint reports some epochs again: the rerun, which the
    # model went on from, replaces the first report (as MLflow's latest value per step does).
    history = history.drop_duplicates("training_iteration", keep="last").sort_values("training_iteration")
    row["epochs_run"] = int(history["training_iteration"].max())
    row["status"] = end_status(failed, row["epochs_run"], row["epochs_planned"])
    best = history.loc[history[metric].idxmax() if mode == "max" else history[metric].idxmin()]
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


def end_status(failed: bool, epochs_run: int, epochs_planned: Any) -> str:
    """errored, stopped early (by the scheduler, before its planned epochs) or completed: decided here only."""
    return "errored" if failed else "stopped early" if epochs_planned and epochs_run < epochs_planned else "completed"


def seeds_in(columns: Any) -> list[int]:
    """The seeds whose metrics a history holds ('val_acc/seed_3' -> 3), in order."""
    return sorted({int(c.rsplit("/seed_", 1)[1]) for c in columns if "/seed_" in c and c.rsplit("/seed_", 1)[1].isdigit()})


def in_trial_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One order wherever the rows came from: Ray's trial ids number grid trials in order."""
    return sorted(rows, key=lambda r: str(r["trial_id"]))


def pick_best(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    scored = [r for r in rows if (r.get("best") or {}).get(metric) is not None]
    if not scored:
        return None
    pick = max if mode == "max" else min
    best = pick(scored, key=lambda r: r["best"][metric])  # ties: the first in trial order
    return {
        "trial_id": best["trial_id"], "config": best["config"], "setting": best["setting"],
        "epoch": best["best_epoch"], "metrics": best["best"], "checkpoint": best.get("checkpoint"),
        "mlflow_run_id": best.get("mlflow_run_id"),
    }
