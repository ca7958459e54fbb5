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


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def setting_label(trial: dict[str, Any], record: dict[str, Any] | None = None) -> str:
    """'lr=0.01, momentum=0.9'; in a sweep search only what differs from the base setting,
    after the variant: 'faithful: epochs=40', or 'corrected: base (epochs=20)' with the base's
    swept values, so a legend says what the base is."""
    setting = dict(trial["setting"])
    if record and record.get("sweeps"):
        variant = setting.pop("variant", "")
        fixed = record["fixed"]
        changed = ", ".join(f"{k}={_short(v)}" for k, v in setting.items() if fixed.get(k) != v)
        if not changed:
            changed = "base (" + ", ".join(f"{k}={_short(fixed[k])}" for k in record["sweeps"]) + ")"  # every sweep has its base in fixed
        return f"{variant}: {changed}" if variant else changed
    return ", ".join(f"{k}={_short(v)}" for k, v in setting.items()) or trial["trial_id"]


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
    show_retries = any(t.get("retries") for t in record["trials"])  # trials restarted after a failure
    rows = []
    for trial in record["trials"]:
        row: dict[str, Any] = {"setting": setting_label(trial, record)}
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
        if show_retries:
            row["retries"] = trial.get("retries", 0)
        row["best"] = "*" if trial["trial_id"] == best_id else ""
        rows.append(row)
    return rows


def _sweep_trial(record: dict[str, Any], param: str, value: Any, variant: str) -> dict[str, Any] | None:
    """The trial of one sweep row: `param` at `value`, every other swept parameter at its base."""
    base = record["fixed"]
    for trial in record["trials"]:
        config = trial["config"]
        if config.get("variant", "") != variant or config.get(param) != value:
            continue
        if all(config.get(q) == base[q] for q in record["sweeps"] if q != param):
            return trial
    return None


def sweep_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A lab's one-at-a-time table: a row per swept setting, the lab's figures beside each variant's."""
    metric = "test_acc" if "test_acc" in record["metrics"] else record["metric"]
    rows = []
    for param, values in record["sweeps"].items():
        for value in values:
            row: dict[str, Any] = {"sweep": param, "setting": _short(value)}
            published = published_for(record["lab"], {param: value})
            if published:
                row["lab's test %"] = published[1]
            for variant in record.get("variants") or {"": {}}:
                trial = _sweep_trial(record, param, value, variant)
                score = ((trial or {}).get("best") or {}).get(metric)
                row[f"{variant or 'ours'} {header(metric)}"] = _format(metric, score)
            rows.append(row)
    return rows


def sweep_verdict(record: dict[str, Any]) -> str:
    """How each variant compares with the lab's published figures, row by row."""
    rows = sweep_rows(record)
    ours = [k for k in rows[0] if k not in ("sweep", "setting", "lab's test %")] if rows else []
    lines = []
    for column in ours:
        pairs = [(r[column], r["lab's test %"]) for r in rows if r.get("lab's test %") not in (None, "") and r[column] != ""]
        if not pairs:
            continue
        wins = sum(o > lab for o, lab in pairs)
        gap = sum(abs(o - lab) for o, lab in pairs) / len(pairs)
        lines.append(f"{column}: above the lab's published test accuracy on {wins} of {len(pairs)} rows; "
                     f"mean distance {gap:.2f} points")
    return "\n".join(lines)


def format_table(record: dict[str, Any], tablefmt: str = "github") -> str:
    if record.get("sweeps"):
        table = tabulate(sweep_rows(record), headers="keys", tablefmt=tablefmt)
        verdict = sweep_verdict(record)
        return f"{table}\n{verdict}" if verdict else table
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
