"""The comparison table: one row per trial, the setting of the varied parameters first."""
from __future__ import annotations

from typing import Any

from tabulate import tabulate


def _is_accuracy(metric: str) -> bool:
    return metric.endswith("_acc")


def shown_metrics(summary: dict[str, Any]) -> list[str]:
    """Accuracies when the lab has them (losses are in the CSV and curves), else everything."""
    metrics = summary["metrics"]
    accuracies = [m for m in metrics if _is_accuracy(m)]
    return accuracies or metrics


def _setting(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in row["setting"].items()) or row["trial_id"]


def _format(metric: str, value: Any) -> Any:
    if value is None:
        return ""
    return round(100 * value, 2) if _is_accuracy(metric) else round(value, 4)


def _header(metric: str) -> str:
    return metric.replace("_acc", " acc %") if _is_accuracy(metric) else metric


def comparison_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows in trial order; metrics are those of each trial's best epoch (by the searched metric)."""
    best_id = (summary.get("best") or {}).get("trial_id")
    rows = []
    for trial in summary["trials"]:
        row: dict[str, Any] = {"setting": _setting(trial)}
        for m in shown_metrics(summary):
            row[_header(m)] = _format(m, (trial.get("best") or {}).get(m))
        row["epochs run"] = trial["epochs_run"]
        row["best epoch"] = trial.get("best_epoch", "")
        status = trial["status"]
        row["status"] = f"failed: {trial['error']}" if status == "errored" else status
        row["best"] = "*" if trial["trial_id"] == best_id else ""
        rows.append(row)
    return rows


def format_table(summary: dict[str, Any]) -> str:
    rows = comparison_rows(summary)
    return tabulate(rows, headers="keys", tablefmt="github") if rows else "(no trials)"


def format_best(summary: dict[str, Any]) -> str:
    best = summary.get("best")
    if not best:
        return "No trial produced a result."
    metric = summary["metric"]
    shown = ", ".join(f"{_header(m)} {_format(m, best['metrics'].get(m))}" for m in shown_metrics(summary))
    setting = ", ".join(f"{k}={v}" for k, v in best["config"].items())
    return (
        f"Best trial {best['trial_id']} (by {metric}, epoch {best['epoch']}): {shown}\n"
        f"Best configuration: {setting}"
    )
