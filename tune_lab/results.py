"""Turn Ray's ResultGrid into summary.json: the best configuration and one row per trial."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

TRIAL_EXTRAS = ("epoch_time_s", "samples_per_s")


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf; numpy scalars become plain numbers."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarise_trial(result: Any, metric: str, mode: str, metrics: tuple[str, ...], varied: list[str]) -> dict[str, Any]:
    config = result.config
    history = result.metrics_dataframe
    row: dict[str, Any] = {
        "trial_id": result.metrics.get("trial_id") or Path(result.path).name,
        "setting": {k: config.get(k) for k in varied},
        "config": {k: _clean(v) for k, v in config.items()},
        "epochs_planned": config.get("epochs"),
        "epochs_run": 0,
        "status": "errored" if result.error else "completed",
        "error": None,
        "path": result.path,
    }
    if result.error:
        row["error"] = f"{type(result.error).__name__}: {str(result.error).strip().splitlines()[-1][:500]}"
    if history is None or history.empty or metric not in history:
        return row
    row["epochs_run"] = int(history["training_iteration"].max())
    if not result.error and row["epochs_planned"] and row["epochs_run"] < row["epochs_planned"]:
        row["status"] = "stopped early"
    best = history.loc[history[metric].idxmax() if mode == "max" else history[metric].idxmin()]
    row["best_epoch"] = int(best["training_iteration"])
    row["best"] = {m: _clean(best[m]) for m in (*metrics, *TRIAL_EXTRAS) if m in best}
    row["last"] = {m: _clean(history[m].iloc[-1]) for m in metrics if m in history}
    row["wall_time_s"] = _clean(history["time_total_s"].iloc[-1]) if "time_total_s" in history else None
    row["history"] = {m: [_clean(v) for v in history[m]] for m in (*metrics, "epoch_time_s") if m in history}
    if result.checkpoint is not None:
        row["checkpoint"] = result.checkpoint.path
    return row


def summarise(grid: Any, *, search: Any, experiment: str, dataset: str, metrics: tuple[str, ...],
              tracking: dict[str, Any], storage: str) -> dict[str, Any]:
    varied = list(search.params)
    rows = [summarise_trial(r, search.metric, search.mode, metrics, varied) for r in grid]
    scored = [r for r in rows if r.get("best", {}).get(search.metric) is not None]
    best = None
    if scored:
        pick = max if search.mode == "max" else min
        best = pick(scored, key=lambda r: r["best"][search.metric])
    run_ids = tracking.pop("trial_runs", {})
    for row in rows:
        row["mlflow_run_id"] = run_ids.get(row["trial_id"])
    return {
        "experiment": experiment,
        "lab": search.lab,
        "search": search.name,
        "search_file": str(search.path),
        "description": search.description,
        "dataset": dataset,
        "metric": search.metric,
        "mode": search.mode,
        "metrics": list(metrics),
        "varied": varied,
        "fixed": search.fixed,
        "algorithm": search.algorithm,
        "scheduler": search.scheduler,
        "storage": storage,
        "mlflow": tracking,
        "best": None if best is None else {
            "trial_id": best["trial_id"], "config": best["config"], "setting": best["setting"],
            "epoch": best["best_epoch"], "metrics": best["best"], "checkpoint": best.get("checkpoint"),
            "mlflow_run_id": best.get("mlflow_run_id"),
        },
        "trials": rows,
    }


def write_summary(summary: dict[str, Any], folder: str) -> Path | str:
    """summary.json next to Ray's experiment folder, local or at a URI (s3://, gs://, file://)."""
    if "://" in folder:
        # The filesystem layer Ray Tune's own storage uses: what Ray can write, this can.
        import pyarrow.fs

        fs, base = pyarrow.fs.FileSystem.from_uri(folder)
        fs.create_dir(base, recursive=True)
        with fs.open_output_stream(f"{base}/summary.json") as out:  # object stores write whole objects
            out.write(json.dumps(summary, indent=2, default=str).encode())
        return f"{folder}/summary.json"
    path = Path(folder) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(path)  # never a half-written summary
    return path
