"""Read a finished search back: from MLflow first, from summary.json when MLflow is unreachable."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from reports.record import Status, in_trial_order, pick_best, trial_row
from reports.seeds import add_seed_statistics
from labspec.config import per_seed_key, seed_list
from labspec.errors import TuneLabError
from labspec.files import is_remote

SPEC_TAG = "tune_lab.search_spec"  # JSON of the search-level fields of summary.json
STATUS_TAG = "tune_lab.status"
ERROR_TAG = "tune_lab.error"
TRIAL_ID_TAG = "tune_lab.trial_id"
SCHEDULE_TAG = "tune_lab.schedule"  # JSON: where promotion ASHA paused, promoted or stopped the trial


class SearchNotFound(TuneLabError, LookupError):
    """Neither a results folder nor an MLflow run matches what the user named."""


def find_summary(target: str, results_root: str) -> Path | None:
    """`target` is a results folder, a summary.json, or an experiment name under the results root."""
    for candidate in (Path(target), Path(results_root) / target):
        if candidate.is_file() and candidate.name == "summary.json":
            return candidate
        if (candidate / "summary.json").is_file():
            return candidate / "summary.json"
    return None


def _reachable(uri: str) -> bool:
    """An SQLite store that does not exist is unreachable (MLflow would create an empty one)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    return True


def _param_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _config_from_params(params: dict[str, str]) -> dict[str, Any]:
    """MLflow params back to values; a sweep case ("case/epochs") overrides the fixed value."""
    config = {k: _param_value(v) for k, v in params.items() if not k.startswith("case/")}
    config.update({k.removeprefix("case/"): _param_value(v) for k, v in params.items() if k.startswith("case/")})
    return config


def run_history(client: Any, run_id: str, wanted: list[str]) -> Any:
    """One row per epoch (`training_iteration`) of an MLflow run, a column per metric of `wanted` it has.

    An epoch that a resumed trial ran again has two values: the later one, as summary.json keeps.
    """
    import pandas as pd

    columns = {}
    for name in wanted:
        if name == "training_iteration":  # the epoch, each metric's step already
            continue
        points = client.get_metric_history(run_id, name)
        if points:
            columns[name] = pd.Series({p.step: p.value for p in sorted(points, key=lambda p: p.timestamp)})
    history = pd.DataFrame(columns)
    return history.rename_axis("training_iteration").reset_index() if not history.empty else history


def from_mlflow(uri: str, parent_run_id: str | None = None, experiment: str | None = None) -> dict[str, Any]:
    """Rebuild the summary dict from the parent run's tags and its child runs' histories."""
    # A dead tracking server should fail in seconds, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.tracking import MlflowClient

    if not _reachable(uri):
        raise ConnectionError(f"no MLflow store at {uri}")
    client = MlflowClient(tracking_uri=uri)
    if parent_run_id:
        parent = client.get_run(parent_run_id)
    else:
        found = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string=f"tags.mlflow.runName = '{experiment}' and tags.`{SPEC_TAG}` != ''",
            max_results=1,
        )
        if not found:
            raise SearchNotFound(f"no MLflow search run named {experiment!r} in {uri}")
        parent = found[0]
    spec = json.loads(parent.data.tags[SPEC_TAG])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        max_results=50_000, order_by=["attributes.start_time ASC"],
    )
    rows = []
    for child in children:
        tags = child.data.tags
        config = _config_from_params(child.data.params)
        wanted = [*spec["metrics"], "epoch_time_s", "samples_per_s"]
        repeats = int(config.get("repeats") or spec.get("repeats") or 1)
        if repeats > 1:  # each seed's metrics beside the seed-mean
            wanted += [per_seed_key(m, s) for s in seed_list(int(config.get("seed") or 0), repeats) for m in spec["metrics"]]
        history = run_history(client, child.info.run_id, wanted)
        status = tags.get(STATUS_TAG)
        row = trial_row(
            trial_id=tags.get(TRIAL_ID_TAG) or tags.get("trial_name", child.info.run_id),
            config=config,
            history=history, failed=status == Status.ERRORED or child.info.status == "FAILED",
            error=tags.get(ERROR_TAG), metric=spec["metric"], mode=spec["mode"],
            metrics=spec["metrics"], varied=spec["varied"],
        )
        row["mlflow_run_id"] = child.info.run_id
        if SCHEDULE_TAG in tags:
            row["schedule"] = json.loads(tags[SCHEDULE_TAG])
        rows.append(row)
    rows = in_trial_order(rows)
    best = pick_best(rows, spec["metric"], spec["mode"])
    return add_seed_statistics({
        **spec,
        "mlflow": {"tracking_uri": uri, "experiment_id": parent.info.experiment_id, "parent_run_id": parent.info.run_id},
        "best": best,
        "trials": rows,
        "source": "mlflow",
    })


def load_record(target: str, results_root: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """The search named by `target`, read from MLflow when it answers, else from summary.json."""
    summary_path = find_summary(target, results_root)
    summary = json.loads(summary_path.read_text()) if summary_path else None
    tracking = (summary or {}).get("mlflow", {})
    uri = tracking_uri or tracking.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None and not is_remote(results_root):
        uri = f"sqlite:///{Path(results_root) / 'mlflow.db'}"
    problem = "no tracking URI"
    if uri:
        try:
            record = from_mlflow(uri, tracking.get("parent_run_id"), experiment=None if summary else target)
        except SearchNotFound:
            if summary is None:
                raise
            problem = f"no matching run in {uri}"
        except Exception as exc:  # unreachable server, missing store, damaged database ...
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            if summary:  # paths on disk are only known to the results folder
                by_id = {t["trial_id"]: t for t in summary["trials"]}
                for row in record["trials"]:
                    for key in ("checkpoint", "path"):
                        if key in by_id.get(row["trial_id"], {}):
                            row[key] = by_id[row["trial_id"]][key]
                if record["best"]:
                    record["best"]["checkpoint"] = by_id.get(record["best"]["trial_id"], {}).get("checkpoint")
            return record
    if summary is None:
        raise SearchNotFound(f"{target}: no results folder with summary.json (looked in {target} and {results_root}) "
                             f"and no MLflow run of that name ({problem})")
    return {**summary, "source": f"summary.json ({problem})"}
