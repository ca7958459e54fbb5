"""The comparison table: one row per trial, the setting of the varied parameters first."""
from __future__ import annotations

from typing import Any

from tabulate import tabulate

from reports.published import published_for


def _is_accuracy(metric: str) -> bool:
    return metric.endswith("_acc")


def shown_metrics(record: dict[str, Any]) -> list[str]:
    """Accuracies when the lab has them (losses are in the curves), else every metric."""
    metrics = record["metrics"]
    accuracies = [m for m in metrics if _is_accuracy(m)]
    return accuracies or metrics


def setting_label(trial: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in trial["setting"].items()) or trial["trial_id"]


def _format(metric: str, value: Any) -> Any:
    if value is None:
        return ""
    return round(100 * value, 2) if _is_accuracy(metric) else round(value, 4)


def header(metric: str) -> str:
    return metric.replace("_acc", " acc %") if _is_accuracy(metric) else metric


def comparison_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows in trial order; metrics are those of each trial's best epoch (by the searched metric)."""
    best_id = (record.get("best") or {}).get("trial_id")
    published = {t["trial_id"]: published_for(record["lab"], t["setting"]) for t in record["trials"]}
    show_published = any(published.values())
    rows = []
    for trial in record["trials"]:
        row: dict[str, Any] = {"setting": setting_label(trial)}
        for m in shown_metrics(record):
            row[header(m)] = _format(m, (trial.get("best") or {}).get(m))
        if show_published:
            lab_figures = published[trial["trial_id"]]
            row["lab's test acc %"] = lab_figures[1] if lab_figures else ""
        row["epochs run"] = trial["epochs_run"]
        row["best epoch"] = trial.get("best_epoch", "")
        wall = trial.get("wall_time_s")
        row["wall time s"] = "" if wall is None else round(wall, 1)
        status = trial["status"]
        row["status"] = f"failed: {trial['error']}" if status == "errored" else status
        row["best"] = "*" if trial["trial_id"] == best_id else ""
        rows.append(row)
    return rows


def format_table(record: dict[str, Any], tablefmt: str = "github") -> str:
    rows = comparison_rows(record)
    return tabulate(rows, headers="keys", tablefmt=tablefmt) if rows else "(no trials)"


def format_best(record: dict[str, Any]) -> str:
    best = record.get("best")
    if not best:
        return "No trial produced a result."
    shown = ", ".join(f"{header(m)} {_format(m, best['metrics'].get(m))}" for m in shown_metrics(record))
    setting = ", ".join(f"{k}={v}" for k, v in best["config"].items())
    return (
        f"Best trial {best['trial_id']} (by {record['metric']}, epoch {best['epoch']}): {shown}\n"
        f"Best configuration: {setting}"
    )
