"""Turn Ray's ResultGrid into summary.json: the best configuration and one row per trial."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from reports.record import Header, Status, Summary, best_checkpoint, in_trial_order, pick_best, trial_row
from reports.seeds import add_seed_statistics
from labspec.config import trained_with
from labspec.files import filesystem, is_remote, write_bytes_whole


def _error_line(error: BaseException) -> str:
    """'RuntimeError: what went wrong', without Ray's wrapper and traceback."""
    cause = getattr(error, "cause", None) or error  # RayTaskError wraps the trial's own exception
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {(lines[-1] if lines else '')[:500]}"


def summarise(grid: Any, header: Header, *, tracking: dict[str, Any], trial_runs: dict[str, str],
              unfinished: set[str] = frozenset(), run_history: Callable[[str], Any] | None = None) -> Summary:
    """summary.json: the search-level `header`, the best trial, one row per trial.

    Trials in `unfinished` were cut off by an interruption: their rows say so rather than
    Status.STOPPED_EARLY, which is the scheduler's verdict.

    `run_history(run_id)`: a trial's history from its MLflow run, for a trial whose own history
    is empty or ends before its last result. Ray copies a trial's result files into the results folder only
    now and then; a driver killed first loses the rest, and a trial that is not run again after
    the resume (promotion ASHA had stopped it at its rung) keeps none of them, while its MLflow
    run, logged as each result came, has them all.
    """
    rows = []
    for result in grid:
        trial_id = result.metrics.get("trial_id") or Path(result.path).name
        history = result.metrics_dataframe
        have = 0 if history is None or history.empty or "training_iteration" not in history else int(history["training_iteration"].max())
        behind = have == 0 or have < int(result.metrics.get("training_iteration") or 0)
        if run_history is not None and trial_runs.get(trial_id) and behind:
            history = run_history(trial_runs[trial_id])
        config = trained_with(result.config or {}, header.get("repeats") or 1)
        row = trial_row(
            trial_id=trial_id, config=config, history=history,
            failed=result.error is not None, error=_error_line(result.error) if result.error else None,
            metric=header["metric"], mode=header["mode"], metrics=header["metrics"], varied=header["varied"],
        )
        if trial_id in unfinished:
            row["status"] = Status.INTERRUPTED if row["epochs_run"] else Status.NOT_RUN
        row["path"] = result.path
        row["mlflow_run_id"] = trial_runs.get(trial_id)
        if result.checkpoint is not None:
            kept = best_checkpoint(result.best_checkpoints or [], header["metric"], header["mode"])
            row["checkpoint"] = (kept or result.checkpoint).path
        rows.append(row)
    rows = in_trial_order(rows)
    best = pick_best(rows, header["metric"], header["mode"])
    return add_seed_statistics({**header, "mlflow": tracking, "best": best, "trials": rows})


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file tune-lab wrote, or None when there is none yet or a kill cut it off."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def complete_summary(folder: Path) -> dict[str, Any] | None:
    """The summary of a search that ran to its end (summary.json says `complete`), else None."""
    summary = read_json(folder / "summary.json")
    return summary if summary and summary.get("complete") else None


def write_json(data: dict[str, Any], folder: str, name: str) -> Path | str:
    """`folder`/`name` as JSON, the folder local or at a URI (s3://, gs://, file://)."""
    text = json.dumps(data, indent=2, default=str)
    if is_remote(folder):
        fs, base = filesystem(folder)
        fs.create_dir(base, recursive=True)
        with fs.open_output_stream(f"{base}/{name}") as out:  # object stores write whole objects
            out.write(text.encode())
        return f"{folder}/{name}"
    path = Path(folder) / name
    write_bytes_whole(path, text.encode())
    return path
