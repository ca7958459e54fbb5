"""The comparison table: one row per trial, the setting of the varied parameters first."""
from __future__ import annotations

from typing import Any

from tabulate import tabulate

from reports import units
from reports.facts import seed_note
from reports.published import published_for, published_note
from reports.record import Status, Summary, TrialRow
from reports.seeds import INTERVAL_METHOD, METHOD, repeated, verdict_text

# The lab's published figure beside ours (shown only where the run is the lab's experiment; the
# table's footnote, published_note, says what that means).
LAB_COLUMN = "lab's test acc %"
SWEEP_LAB_COLUMN = "lab's test %"


def _is_accuracy(metric: str) -> bool:
    """A fraction shown as a percentage (accuracies, the share of readable samples): reports.units' rule."""
    return units.is_percent(metric)


def shown_metrics(record: Summary) -> list[str]:
    """Accuracies when the lab has them (losses are in the curves), else every metric."""
    metrics = record["metrics"]
    accuracies = [m for m in metrics if m.endswith("_acc")]
    return accuracies or metrics


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def setting_label(trial: TrialRow, record: Summary | None = None) -> str:
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
    """A table cell: the metric in its shown unit with its decimals (reports.units, one rule everywhere)."""
    shown = units.shown(metric, value)
    return "" if shown is None else shown


def header(metric: str) -> str:
    if metric.endswith("_acc"):
        return metric.replace("_acc", " acc %")
    return f"{metric} %" if _is_accuracy(metric) else metric


def _spread(metric: str, stats: dict[str, Any] | None) -> tuple[str, str]:
    """'98.22 ± 0.08' and '[98.12, 98.32]' in the table's units ('' where unknown)."""
    if not stats:
        return "", ""
    scale, digits = units.scale(metric), units.decimals(metric)
    mean = f"{scale * stats['mean']:.{digits}f}"
    if stats["std"] is None:
        return mean, ""
    return (f"{mean} ± {scale * stats['std']:.{digits}f}",
            f"[{scale * stats['ci_low']:.{digits}f}, {scale * stats['ci_high']:.{digits}f}]")


def comparison_rows(record: Summary) -> list[dict[str, Any]]:
    """Rows in trial order; metrics are those of each trial's best epoch (by the searched metric)."""
    best_id = (record.get("best") or {}).get("trial_id")
    published = {t["trial_id"]: _lab_figures(record, t) for t in record["trials"]}
    show_published = any(published.values())
    show_retries = any(t.get("retries") for t in record["trials"])  # trials restarted after a failure
    seeded = repeated(record)
    # the searched metric and its test split get error bars; others show their seed-mean
    with_spread = {m for t in record["trials"] for m in (t.get("seed_stats") or {})} if seeded else set()
    rows = []
    for trial in record["trials"]:
        row: dict[str, Any] = {"setting": setting_label(trial, record)}
        for m in shown_metrics(record):
            if m in with_spread:
                stats = (trial.get("seed_stats") or {}).get(m)
                row[f"{header(m)} mean ± std"], row[f"{header(m)} 95% CI"] = _spread(m, stats)
            else:
                row[header(m)] = _format(m, (trial.get("best") or {}).get(m))
        if seeded:
            n = ((trial.get("seed_stats") or {}).get(record["metric"]) or {}).get("n", 0)
            row["seeds"] = f"{n} of {trial['config'].get('repeats', record['repeats'])}"
            row["vs best"] = verdict_text(trial.get("verdict"))
        if show_published:
            lab_figures = published[trial["trial_id"]]
            row[LAB_COLUMN] = lab_figures[1] if lab_figures else ""
        row["epochs run"] = trial["epochs_run"]
        row["best epoch"] = trial.get("best_epoch", "")
        wall = trial.get("wall_time_s")
        row["wall time s"] = "" if wall is None else round(wall, 1)
        status = trial["status"]
        row["status"] = f"failed: {trial['error']}" if status == Status.ERRORED else status
        if show_retries:
            row["retries"] = trial.get("retries", 0)
        row["best"] = "*" if trial["trial_id"] == best_id else ""
        rows.append(row)
    return rows


def _lab_figures(record: Summary, trial: TrialRow) -> tuple[float, float] | None:
    """The lab's figures for a trial that varies one setting from the search's fixed values."""
    setting = {k: v for k, v in trial["setting"].items() if k != "variant"}
    if len(setting) != 1:
        return None
    ((param, value),) = setting.items()
    return published_for(record, param, value, trial.get("config") or {})


def _sweep_trial(record: Summary, param: str, value: Any, variant: str) -> dict[str, Any] | None:
    """The trial of one sweep row: `param` at `value`, every other swept parameter at its base."""
    base = record["fixed"]
    for trial in record["trials"]:
        config = trial["config"]
        if config.get("variant", "") != variant or config.get(param) != value:
            continue
        if all(config.get(q) == base[q] for q in record["sweeps"] if q != param):
            return trial
    return None


def sweep_rows(record: Summary) -> list[dict[str, Any]]:
    """A lab's one-at-a-time table: a row per swept setting, the lab's figures beside each variant's."""
    metric = "test_acc" if "test_acc" in record["metrics"] else record["metric"]
    rows = []
    for param, values in record["sweeps"].items():
        for value in values:
            row: dict[str, Any] = {"sweep": param, "setting": _short(value)}
            trials = {variant: _sweep_trial(record, param, value, variant) for variant in record.get("variants") or {"": {}}}
            figures = [published_for(record, param, value, t.get("config") or {}) for t in trials.values() if t]
            published = next((f for f in figures if f), None)
            row[SWEEP_LAB_COLUMN] = published[1] if published else ""
            for variant, trial in trials.items():
                score = ((trial or {}).get("best") or {}).get(metric)
                name = variant or "ours"
                row[f"{name} {header(metric)}"] = _format(metric, score)
                if repeated(record):
                    stats = ((trial or {}).get("seed_stats") or {}).get(metric)
                    row[f"{name} ± std"] = _format(metric, stats["std"]) if stats and stats["std"] is not None else ""
                    if published:
                        row[f"lab's in {name} 95% CI"] = _inside(published[1], stats)
            rows.append(row)
    if all(row[SWEEP_LAB_COLUMN] == "" for row in rows):  # not the lab's experiment: no column of blanks
        for row in rows:
            del row[SWEEP_LAB_COLUMN]
    return rows


def _inside(figure: float, stats: dict[str, Any] | None) -> str:
    """Whether a published percentage lies inside our 95% interval: 'yes', 'no, lab's above', 'no, lab's below'."""
    if not stats or stats["ci_low"] is None:
        return ""
    if 100 * stats["ci_low"] <= figure <= 100 * stats["ci_high"]:
        return "yes"
    return "no, lab's above" if figure > 100 * stats["ci_high"] else "no, lab's below"


def sweep_verdict(record: Summary) -> str:
    """How each variant compares with the lab's published figures, row by row."""
    rows = sweep_rows(record)
    ours = [k for k in rows[0] if k.endswith(header("test_acc")) or k.endswith(header(record["metric"]))] if rows else []
    lines = []
    for column in ours:
        pairs = [(r[column], r[SWEEP_LAB_COLUMN]) for r in rows if r.get(SWEEP_LAB_COLUMN) not in (None, "") and r[column] != ""]
        if not pairs:
            continue
        wins = sum(o > lab for o, lab in pairs)
        gap = sum(abs(o - lab) for o, lab in pairs) / len(pairs)
        lines.append(f"{column}: above the lab's published test accuracy on {wins} of {len(pairs)} rows; "
                     f"mean distance {gap:.2f} points")
    return "\n".join(lines)


def lab_note(record: Summary, rows: list[dict[str, Any]]) -> str:
    """The footnote saying what the lab's column holds, when `rows` show one of its figures."""
    shown = any(r.get(LAB_COLUMN) not in (None, "") or r.get(SWEEP_LAB_COLUMN) not in (None, "") for r in rows)
    return published_note(record["lab"]) if shown else ""


def report_tables(record: Summary) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    """(heading, rows, notes beneath) of each table a report shows: "Comparison", a row per trial or,
    in a sweep search, the lab's row per swept setting; a sweep search's trials follow under "Trials"."""
    trial_rows = comparison_rows(record)
    one_seed = seed_note(record) if record.get("trials") else ""  # '' with --repeats: the table has error bars
    trials = ("Trials", trial_rows, [n for n in (lab_note(record, trial_rows), METHOD if repeated(record) else "", one_seed) if n])
    if not record.get("sweeps"):
        return [("Comparison", *trials[1:])]
    rows = sweep_rows(record)
    notes = [*sweep_verdict(record).splitlines(), lab_note(record, rows), INTERVAL_METHOD if repeated(record) else "", one_seed]
    return [("Comparison", rows, [n for n in notes if n]), trials]


def text_table(rows: list[dict[str, Any]], notes: list[str], tablefmt: str = "github") -> str:
    if not rows:
        return "(no trials)"
    floatfmt = [units.column_format(column) for column in rows[0]]  # each metric's decimals (reports.units)
    return "\n".join([tabulate(rows, headers="keys", tablefmt=tablefmt, floatfmt=floatfmt), *notes])


# A terminal shows this many trials of a bigger search, the best first (table.csv has them all).
TERMINAL_TRIALS = 20


def ranked_trials(record: Summary) -> list[TrialRow]:
    """The trials best first by the searched metric (each trial's best value, the record's mode;
    ties in trial order), then those without a value (errored before reporting, not run) in trial order."""
    metric = record["metric"]
    scored = [t for t in record["trials"] if (t.get("best") or {}).get(metric) is not None]
    ranked = sorted(scored, key=lambda t: t["best"][metric], reverse=record.get("mode", "max") == "max")
    return ranked + [t for t in record["trials"] if (t.get("best") or {}).get(metric) is None]


def table_csv_path(record: Summary) -> str:
    """Where the report's table.csv of `record` is (or will be): its results folder's report/."""
    folder = record.get("storage")
    return f"{folder.rstrip('/')}/report/table.csv" if folder else "report/table.csv"


def format_table(record: Summary, tablefmt: str = "github") -> str:
    """The comparison as the terminal prints it, the first of the report's tables; of a search with
    more than TERMINAL_TRIALS trials (not a sweep's table, a row per setting) the best of them and a line
    saying how many more table.csv has."""
    _, rows, notes = report_tables(record)[0]
    if record.get("sweeps") or len(rows) <= TERMINAL_TRIALS:
        return text_table(rows, notes, tablefmt)
    by_id = {t["trial_id"]: row for t, row in zip(record["trials"], rows)}  # comparison_rows: one per trial, in order
    top = ranked_trials(record)[:TERMINAL_TRIALS]
    shown = [by_id[t["trial_id"]] for t in top]
    scored = sum((t.get("best") or {}).get(record["metric"]) is not None for t in top)
    unscored = f", then {len(top) - scored} without a result" if scored < len(top) else ""
    more = (f"... and {len(rows) - len(shown)} more trials in {table_csv_path(record)} "
            f"(above: the {scored} best by {record['metric']}{unscored})")
    return text_table(shown, [more, *notes], tablefmt)


def format_best(record: Summary) -> str:
    best = record.get("best")
    if not best:
        return "No trial produced a result."
    shown = ", ".join(f"{header(m)} {units.text(m, best['metrics'].get(m), unit=False)}" for m in shown_metrics(record))
    setting = ", ".join(f"{k}={v}" for k, v in best["config"].items())
    return (
        f"Best trial {best['trial_id']} (by {record['metric']}, epoch {best['epoch']}): {shown}\n"
        f"Best configuration: {setting}"
    )
