"""One way to write each metric, wherever a report writes it: tables, paragraphs, figure legends.

Why one rule: a table that shows 15.2753 beside a paragraph's 15.13, or a BLEU gap of 0.4139 beside
a loss of 1.031, invites the reader to compare digits that carry no information. Each metric gets a
unit (accuracies and shares as percentages, the reports' unit; the data keeps fractions, as
design.md says) and a fixed number of decimals, chosen by what the metric's seed-to-seed noise
leaves meaningful.
"""
from __future__ import annotations

from typing import Any

from labspec.registry import is_fraction

# Decimals by metric name (the part after val_ / test_ / train_); fallback: LOSS_DECIMALS.
DECIMALS = {
    "acc": 2, "readable": 2,  # percentages: 98.44 %
    "bleu": 2,                # BLEU 0-100
    "fid": 1,                 # FID in the tens to hundreds
    "elbo": 2, "kl": 2,       # nats per image
    "mse": 5,                 # per-pixel squared error, ~0.01
}
LOSS_DECIMALS = 4


def is_percent(metric: str) -> bool:
    """Whether `metric` is a fraction that reports show as a percentage (the labs' contract says which:
    labspec.registry.is_fraction)."""
    return is_fraction(metric)


def _base(metric: str) -> str:
    name = metric.split("/", 1)[0]  # 'val_acc/seed_3' is val_acc
    for prefix in ("train_", "val_", "test_"):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name


def decimals(metric: str) -> int:
    """The decimals every report writes `metric` with (in its shown unit)."""
    base = _base(metric)
    if is_percent(metric):
        return DECIMALS["acc"]
    return DECIMALS.get(base, DECIMALS.get(metric, LOSS_DECIMALS))


def scale(metric: str) -> float:
    return 100.0 if is_percent(metric) else 1.0


def shown(metric: str, value: Any) -> float | None:
    """The value in the shown unit, rounded to the metric's decimals (a table cell), None for none."""
    if value is None:
        return None
    return round(scale(metric) * float(value), decimals(metric))


def text(metric: str, value: Any, unit: bool = True) -> str:
    """'98.44%' / '38.21' / '0.01234': `value` (data units) as every report writes it; 'n/a' for none."""
    if value is None:
        return "n/a"
    number = f"{scale(metric) * float(value):.{decimals(metric)}f}"
    return f"{number}%" if unit and is_percent(metric) else number


def gap(metric: str, a: float, b: float) -> str:
    """The distance between two values of `metric` with the same decimals: '3.62 points' for percentages."""
    number = f"{scale(metric) * abs(a - b):.{decimals(metric)}f}"
    return f"{number} points" if is_percent(metric) else number


# Table columns that are no metric but carry a fixed precision.
COLUMN_DECIMALS = {"wall time s": 1, "wall_time_s": 1}
_METRIC_WORDS = ("loss", "acc", "bleu", "fid", "elbo", "kl", "mse", "readable", "error", "real", "fake")


def column_format(column: str) -> str:
    """The float format of a report table's column, from its header: 'val acc %' and other percentages
    with the percentage's decimals, 'val_bleu' / 'ours val_mse' with that metric's, others as Python's 'g'
    (settings, counts, published figures' ± columns)."""
    if column in COLUMN_DECIMALS:
        return f".{COLUMN_DECIMALS[column]}f"
    if column.endswith((" %", "_pct")):  # the report's 'val acc %', the Python table's val_acc_pct
        return f".{DECIMALS['acc']}f"
    token = column.split()[-1]
    if any(word in token for word in _METRIC_WORDS):
        return f".{decimals(token)}f"
    return "g"


def cell(column: str, value: Any) -> str:
    """One table cell as text, the way report.md's table prints it (report.html uses this too)."""
    if value is None:
        return ""
    return format(value, column_format(column)) if isinstance(value, float) else str(value)
