"""A finished search as pandas DataFrames, for a notebook: `trials_frame`, `curves_frame`, `best_of`.

The record (summary.json's dict, or `reports.source.load_record`'s) is built for the reports: nested
dicts, accuracies as fractions, values as JSON or MLflow left them. A student wants one typed column
per thing instead, so `df.groupby("optimizer")["val_acc_pct"].mean()` just works:

- every hyperparameter its own column, typed as the lab declares it (MLflow gives its params back as
  text, and YAML reads '1e-05' as a word, so the declaration, not the value, decides the type);
- metrics at each trial's selected epoch, accuracies in percent with the unit in the name
  (`val_acc_pct`, the CLI table's "val acc %"), every other metric as the lab reports it;
- numbers as numeric dtypes, never the table's formatted strings ('98.4', '*', '2 of 3').

The same record gives the same frame whichever source it was read from.
"""
from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

from reports.record import TRIAL_EXTRAS, Summary
from reports.seeds import on_test_split, repeated
from reports.table import _is_accuracy  # the CLI table's rule for what is a percentage: one rule for both
from labspec.config import effective_config

if TYPE_CHECKING:
    import pandas as pd

# Keys of a trial's config that steer the trainable but are no hyperparameter: seeds per
# configuration (the search's `repeats`, also in the record). `case` goes by effective_config.
NOT_HYPERPARAMETERS = frozenset({"repeats"})
STAT_COLUMNS = ("mean", "std", "ci_low", "ci_high")


def metric_column(metric: str) -> str:
    """'val_acc' -> 'val_acc_pct' (the report's accuracies are percent); other names stay."""
    return f"{metric}_pct" if _is_accuracy(metric) else metric


def metric_value(metric: str, value: Any) -> float | None:
    """A metric's value in its column's unit: accuracies times 100, the rest as reported."""
    if value is None:
        return None
    return float(100 * value if _is_accuracy(metric) else value)


def trials_frame(record: Summary) -> pd.DataFrame:
    """One row per trial, in trial order (with --repeats, a trial is one setting and its seeds).

    Columns: `trial_id`; each hyperparameter (the searched ones first); each metric at the trial's
    selected epoch, `epoch_time_s` and `samples_per_s` of that epoch, `wall_time_s`; with repeats,
    `<metric>_mean/_std/_ci_low/_ci_high` of the searched metric and its test split, `seeds_alive`,
    `verdict` and `p` (see reports.seeds); then `status`, `error`, `epochs_run`, `best_epoch`
    (missing where the trial never reported), `best`, `retries` (only where a trial was retried,
    as in the report's table; summary.json knows retries, MLflow does not), `mlflow_run_id`, `checkpoint`.
    """
    import pandas as pd

    trials = record["trials"]
    columns: dict[str, Any] = {"trial_id": _words([t["trial_id"] for t in trials])}
    columns.update(_hyperparameters(record))
    best_at = [t.get("best") or {} for t in trials]
    for metric in (*record["metrics"], *TRIAL_EXTRAS):
        columns[metric_column(metric)] = _numbers([metric_value(metric, b.get(metric)) for b in best_at])
    columns["wall_time_s"] = _numbers([t.get("wall_time_s") for t in trials])
    if repeated(record):
        columns.update(_seed_columns(record))
    columns["status"] = _words([t["status"] for t in trials])
    columns["error"] = _words([t.get("error") for t in trials])
    columns["epochs_run"] = pd.Series([int(t.get("epochs_run") or 0) for t in trials], dtype="int64")
    columns["best_epoch"] = pd.Series([t.get("best_epoch") for t in trials], dtype="Int64")
    best_id = (record.get("best") or {}).get("trial_id")
    columns["best"] = pd.Series([t["trial_id"] == best_id for t in trials], dtype="bool")
    if any(t.get("retries") for t in trials):
        columns["retries"] = pd.Series([int(t.get("retries") or 0) for t in trials], dtype="int64")
    columns["mlflow_run_id"] = _words([t.get("mlflow_run_id") for t in trials])
    columns["checkpoint"] = _words([t.get("checkpoint") for t in trials])
    return pd.DataFrame(columns, index=pd.RangeIndex(len(trials)))


def curves_frame(record: Summary) -> pd.DataFrame:
    """Long format, one row per (trial, epoch) a trial reported: `trial_id`, `epoch`, every metric
    (same column names and units as `trials_frame`) and `epoch_time_s`. With --repeats the values are
    the seed-mean the search decided on; each seed's curve stays in the record (`seed_history`).

    Join the hyperparameters on `trial_id`: `curves_frame(r).merge(trials_frame(r)[["trial_id", "lr"]])`.
    """
    import pandas as pd

    metrics = [*record["metrics"], "epoch_time_s"]
    rows: dict[str, list[Any]] = {"trial_id": [], "epoch": [], **{metric_column(m): [] for m in metrics}}
    for trial in record["trials"]:
        history = trial.get("history") or {}
        epochs = history.get("training_iteration") or []
        rows["trial_id"] += [trial["trial_id"]] * len(epochs)
        rows["epoch"] += [int(e) for e in epochs]
        for metric in metrics:
            values = history.get(metric) or [None] * len(epochs)
            rows[metric_column(metric)] += [metric_value(metric, v) for v in values]
    columns = {"trial_id": _words(rows["trial_id"]), "epoch": pd.Series(rows["epoch"], dtype="int64")}
    columns.update({metric_column(m): _numbers(rows[metric_column(m)]) for m in metrics})
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows["epoch"])))


def best_of(record: Summary) -> dict[str, Any] | None:
    """The best trial, or None when no trial produced a result.

    {"trial_id", "config", "metrics", "epoch", "checkpoint", "mlflow_run_id"}: `config` holds the
    trial's hyperparameters typed as in `trials_frame` (plain Python values; rebuild the lab's
    settings with `labspec.config.config_from_dict`, which skips a sweep's `variant` label);
    `metrics` are the raw values at the selected epoch `epoch`, under the lab's own names
    (accuracies as fractions, as the checkpoint and MLflow have them, unlike the frames' percent).
    """
    best = record.get("best")
    if not best:
        return None
    trials = record["trials"]
    at = next((i for i, t in enumerate(trials) if t["trial_id"] == best["trial_id"]), None)
    if at is None:  # a record cut down to some trials: the best's own config, typed on its own
        trials, at = [{"config": best.get("config") or {}}], 0
    own = effective_config(trials[at].get("config") or {})
    config = {name: _plain(column.iloc[at]) for name, column in _hyperparameters({**record, "trials": trials}).items()
              if name in own}
    return {"trial_id": best["trial_id"], "config": config, "metrics": dict(best.get("metrics") or {}),
            "epoch": best.get("epoch"), "checkpoint": best.get("checkpoint"), "mlflow_run_id": best.get("mlflow_run_id")}


# --- columns ---------------------------------------------------------------------------------


def _hyperparameters(record: Summary) -> dict[str, pd.Series]:
    """A typed column per hyperparameter any trial has: the searched first, then in the order the
    lab declares them, then (a `variant`, a lab not registered here) by name."""
    configs = [{k: v for k, v in effective_config(t.get("config") or {}).items() if k not in NOT_HYPERPARAMETERS}
               for t in record["trials"]]
    declared = _declared_types(record.get("lab"))
    present = {k for c in configs for k in c}
    order = [k for k in record.get("varied") or [] if k in present]
    order += [k for k in declared if k in present and k not in order]
    order += sorted(present - set(order))
    return {name: _typed([c.get(name) for c in configs], _kind(declared.get(name))) for name in order}


def _seed_columns(record: Summary) -> dict[str, pd.Series]:
    """Error bars of the searched metric and its test split (what reports.seeds computes), the
    number of seeds alive at the selected epoch and the verdict against the best."""
    import pandas as pd

    trials = record["trials"]
    metric = record["metric"]
    columns = {}
    for m in (m for m in (metric, on_test_split(metric, record["metrics"])) if m):
        stats = [(t.get("seed_stats") or {}).get(m) or {} for t in trials]
        for stat in STAT_COLUMNS:
            columns[f"{metric_column(m)}_{stat}"] = _numbers([metric_value(m, s.get(stat)) for s in stats])
    alive = [((t.get("seed_stats") or {}).get(metric) or {}).get("n", 0) for t in trials]
    columns["seeds_alive"] = pd.Series(alive, dtype="int64")
    verdicts = [t.get("verdict") or {} for t in trials]
    columns["verdict"] = _words([v.get("label") for v in verdicts])
    columns["p"] = _numbers([v.get("p") for v in verdicts])
    return columns


def _declared_types(lab: str | None) -> dict[str, Any]:
    """The lab's hyperparameters and their type hints, in declaration order; {} for a lab this
    process has not registered (a user's own lab read back without its module)."""
    from labspec.config import field_types
    from labspec.registry import get_lab

    try:
        return dict(field_types(get_lab(str(lab)).config))
    except KeyError:
        return {}


def _kind(hint: Any) -> type | None:
    """int, float, bool or str for a type hint (a Literal's by its words); None: unknown."""
    if typing.get_origin(hint) is typing.Literal:
        kinds = {type(a) for a in typing.get_args(hint)}
        return kinds.pop() if len(kinds) == 1 else str
    return hint if hint in (int, float, bool, str) else None


def _typed(values: list[Any], kind: type | None) -> pd.Series:
    """A column of `kind`, its values converted (MLflow's '1e-05', '3', 'True'); an undeclared or
    unconvertible column gets the narrowest kind all its values fit."""
    if kind is not None:
        try:
            return _series([None if v is None else _convert(kind, v) for v in values], kind)
        except (TypeError, ValueError):
            pass
    if any(v is not None for v in values):
        for candidate in (bool, int, float):
            try:
                return _series([None if v is None else _convert(candidate, v, strict=True) for v in values], candidate)
            except (TypeError, ValueError):
                continue
    return _words(values)


def _convert(kind: type, value: Any, strict: bool = False) -> Any:
    """`value` as `kind`; ValueError where it is not one. `strict` (guessing an undeclared column's
    kind): no bool from a number, no int from a float, no number from a bool."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(value)
    if isinstance(value, bool) and strict:
        raise ValueError(value)
    if kind is int:
        if isinstance(value, float) and (strict or not value.is_integer()):
            raise ValueError(value)
        return int(value)  # int('3'); int('3.0') raises, as it should
    if kind is float:
        return float(value)
    return str(value)


def _series(values: list[Any], kind: type) -> pd.Series:
    import pandas as pd

    if kind is str:
        return _words(values)
    if kind is float:
        return _numbers(values)
    missing = any(v is None for v in values)
    dtype = {int: ("Int64", "int64"), bool: ("boolean", "bool")}[kind][0 if missing else 1]
    return pd.Series(values, dtype=dtype)


def _numbers(values: list[Any]) -> pd.Series:
    import pandas as pd

    return pd.Series([float("nan") if v is None else float(v) for v in values], dtype="float64")


def _words(values: list[Any]) -> pd.Series:
    """Text, missing values as missing: pandas' own string dtype from pandas 3 (`str`), object before
    it (where dtype="str" would turn None into 'None')."""
    import pandas as pd

    values = [None if v is None else str(v) for v in values]
    return pd.Series(values, dtype="str" if int(pd.__version__.split(".")[0]) >= 3 else object)


def _plain(value: Any) -> Any:
    """A frame cell as a plain Python value (numpy scalars unwrapped, missing as None)."""
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value
