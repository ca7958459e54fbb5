"""Error bars over a configuration's seeds (`--repeats`), and which configurations are really worse.

For each configuration, at its selected epoch (its best epoch by the seed-mean of the searched
metric): mean, sample standard deviation and a 95% Student-t interval of the searched metric
and of its test counterpart. Each configuration is then compared with the best by Welch's
t-test on the searched metric's seed values: two-sided, alpha 0.05, no correction for the
number of configurations compared (with many configurations, a few "worse" verdicts near
p = 0.05 are expected by chance). Welch's test because configurations need not share a
variance: an unstable optimizer's seeds spread far more than a stable one's.
"""
from __future__ import annotations

import math
from typing import Any

from reports.record import Summary, TrialRow

ALPHA = 0.05
CONFIDENCE = 0.95
INTERVAL_METHOD = (f"mean +- sample std over seeds and a {CONFIDENCE:.0%} Student-t interval, at each configuration's "
                   f"selected epoch")
METHOD = (f"{INTERVAL_METHOD}; 'vs best': Welch's t-test (two-sided, alpha {ALPHA}) of each configuration's seeds "
          f"against the best's, on the searched metric, not corrected for the number of configurations compared")


def on_test_split(metric: str, metrics: list[str]) -> str | None:
    """The test split's metric of a validation metric (val_acc -> test_acc), when the lab reports it."""
    if metric.startswith("val_") and (other := "test_" + metric.removeprefix("val_")) in metrics:
        return other
    return None


def repeated(record: Summary) -> bool:
    """Whether the search trained several seeds per configuration (`--repeats`)."""
    return (record.get("repeats") or 1) > 1


def interval(values: list[float]) -> dict[str, Any]:
    """n, mean, std and the 95% t-interval of the values (no interval with fewer than two)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    # by hand, not stats.t.interval: seeds that all agree (std 0) give [mean, mean], not NaN
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of Welch's t-test; two sets without spread differ surely or not at all."""
    from scipy import stats

    if len(set(a)) == 1 and len(set(b)) == 1:
        return 1.0 if a[0] == b[0] else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def seed_values(trial: TrialRow, metric: str) -> list[float]:
    """The seeds' values of `metric` at the trial's selected epoch (seeds that failed left out)."""
    return [v for v in ((trial.get("seeds") or {}).get(metric) or {}).values() if v is not None]


def add_seed_statistics(record: Summary) -> Summary:
    """Fill each trial's `seed_stats` and `verdict` in a record whose trials carry `seeds`.

    A no-op for a one-seed search: its table stays as it always was.
    """
    if not repeated(record):
        return record
    metric = record["metric"]
    shown = [m for m in (metric, on_test_split(metric, record["metrics"])) if m]
    best_id = (record.get("best") or {}).get("trial_id")
    best = next((t for t in record["trials"] if t["trial_id"] == best_id), None)
    best_values = seed_values(best, metric) if best else []
    for trial in record["trials"]:
        values = {m: seed_values(trial, m) for m in shown}
        trial["seed_stats"] = {m: interval(v) for m, v in values.items() if v}
        n = len(values[metric])
        if trial is best:
            trial["verdict"] = {"label": "best", "p": None}
        elif n == 0:
            trial["verdict"] = None
        elif n < 2 or len(best_values) < 2:
            trial["verdict"] = {"label": f"unknown (n = {min(n, len(best_values))})", "p": None}
        else:
            p = welch_p(values[metric], best_values)
            trial["verdict"] = {"label": "worse" if p < ALPHA else "tied with best", "p": p}
    return record


def verdict_text(verdict: dict[str, Any] | None) -> str:
    if not verdict:
        return ""
    if verdict["p"] is None:
        return verdict["label"]
    return f"{verdict['label']} (p = {verdict['p']:.2g})"
