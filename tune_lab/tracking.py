"""MLflow: one experiment per lab, one parent run per search, one child run per trial.

Trials are logged from the driver by `TrialRuns`, a Tune callback; the parent-run tag nests them.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterator

from ray.tune import Callback

from reports.record import end_status
from reports.source import ERROR_TAG, STATUS_TAG, TRIAL_ID_TAG
from trainables.config import effective_config

# A trial run's end in words ('stopped early at epoch 2 of 20'): a column the runs table can show.
OUTCOME_TAG = "outcome"

# MLflow's SQLite store logs its schema migrations at INFO on first use: noise for a user.
logging.getLogger("alembic").setLevel(logging.WARNING)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """One driver at a time through the first touch of an embedded SQLite store.

    The first client of a new store creates its tables through alembic migrations; two searches
    started together on a fresh results root both migrate and one dies with "table already
    exists". An exclusive lock on a file beside the database serialises that (and the lab's
    experiment's creation); a tracking server orders its own writes.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(uri.removeprefix("sqlite:///") + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def experiment_id_for(client: Any, name: str, artifact_root: str | None) -> str:
    """The experiment called `name`, created if missing (by this driver or, in a race, another)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id  # another search created it first


class TrialRuns(Callback):
    """One MLflow child run per trial under the search's parent run, logged from the driver.

    Through an MlflowClient on the search's tracking URI: nothing process-wide (mlflow's global
    tracking URI) to set and restore. Each epoch's metrics go in one batch: one call per metric,
    as Ray's MLflowLoggerCallback makes, took ~0.6 s per result on SQLite and stalled Tune.

    A trial resumed from a checkpoint older than its last report (after a kill, or a retry) runs
    those epochs again. MLflow keeps every value logged at a step and cannot delete one: a value
    the rerun reports again unchanged (a deterministic rerun: the checkpoint holds the random
    streams) is not logged twice, and one that differs (timings) is logged, later, so that the
    latest value of each epoch is the rerun's, as in summary.json (reports/source.py reads MLflow so).
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, resumed: bool = False,
                 header: dict[str, Any] | None = None) -> None:
        self.uri, self.experiment_id, self.parent_run_id = uri, experiment_id, parent_run_id
        self.header = header or {}  # the search's facts (varied, sweeps, fixed): what names a trial's run
        self.names: set[str] = set()  # run names given by this driver: a repeated setting gets its trial id too
        # Only a resumed search has runs of earlier drivers to find: a new one skips the query (per
        # trial, over every run of the lab's experiment).
        self.resumed = resumed
        self.runs: dict[str, str] = {}  # trial id -> its run
        self.logged_to: dict[str, int] = {}  # trial id -> the last epoch its run has
        self.logged: dict[str, dict[int, dict[str, float]]] = {}  # trial -> epoch -> metric -> value, while it reruns

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A new run, or a resumed trial's own: found by its trial id among the parent's children."""
        from mlflow.entities import Param

        client = self.client()
        if trial.trial_id not in self.runs:
            found = self._logged_run(client, trial) if self.resumed else []
            if found:
                client.update_run(found[0].info.run_id, status="RUNNING")
            tags = {"mlflow.parentRunId": self.parent_run_id, "trial_name": str(trial), TRIAL_ID_TAG: trial.trial_id,
                    OUTCOME_TAG: "running"}
            run = found[0] if found else client.create_run(self.experiment_id, run_name=self.run_name(trial), tags=tags)
            self.runs[trial.trial_id] = run.info.run_id
            if found:  # a resumed search: the epochs its run has (a metric's latest value is at its last step)
                self.logged_to[trial.trial_id] = int(run.data.metrics.get("training_iteration", 0))
        # The values the trial trains with (a sweep's case applied: `epochs`, not `epochs` and `case/epochs`);
        # a run logged before by another driver keeps its params (MLflow refuses to change one).
        logged = client.get_run(self.runs[trial.trial_id]).data.params if self.resumed else {}
        params = [Param(key, str(value)) for key, value in flat_params(effective_config(trial.config)).items()
                  if key not in logged]
        client.log_batch(self.runs[trial.trial_id], params=params)

    def run_name(self, trial: Any) -> str:
        """The trial's setting ('optimizer=sgd'), as the report's table names it, so that the runs table reads
        like the report; a setting seen before in this search (num_samples > 1) also gets its trial id."""
        from reports.table import setting_label

        varied = self.header.get("varied") or []
        if not varied:
            return str(trial)
        config = effective_config(trial.config)
        name = setting_label({"setting": {k: config.get(k) for k in varied}, "trial_id": trial.trial_id}, self.header)
        if name in self.names:
            name = f"{name} ({trial.trial_id})"
        self.names.add(name)
        return name[:250]

    def _logged_run(self, client: Any, trial: Any) -> list:
        """The trial's run from an earlier driver of this search (a resumed search), as a list of none or one."""
        return client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{self.parent_run_id}' "
                                  f"and tags.`{TRIAL_ID_TAG}` = '{trial.trial_id}'", max_results=1)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        from mlflow.entities import Metric

        step, now = result.get("training_iteration", iteration), int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for key, value in result.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)]
        client, run_id = self.client(), self.runs[trial.trial_id]
        if step <= self.logged_to.get(trial.trial_id, 0):  # an epoch run again
            if trial.trial_id not in self.logged:
                self.logged[trial.trial_id] = self._history(client, run_id)
            before = self.logged[trial.trial_id].get(step, {})
            metrics = [m for m in metrics if before.get(m.key) != m.value]
        else:
            self.logged.pop(trial.trial_id, None)
            self.logged_to[trial.trial_id] = step
        if metrics:
            client.log_batch(run_id, metrics=metrics)

    @staticmethod
    def _history(client: Any, run_id: str) -> dict[int, dict[str, float]]:
        """Epoch -> metric -> the latest value the run has."""
        history: dict[int, dict[str, float]] = {}
        for key in client.get_run(run_id).data.metrics:
            for point in sorted(client.get_metric_history(run_id, key), key=lambda p: p.timestamp):
                history.setdefault(point.step, {})[key] = point.value
        return history

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end(trial, failed=True)

    def end(self, trial: Any, failed: bool) -> None:
        """How the trial ended, as tags the reports read, and the run closed."""
        client = self.client()
        run_id = self.runs.get(trial.trial_id)
        if run_id is None:  # a trial this driver never started: one that waited at a rung when the search was resumed
            found = self._logged_run(client, trial) if self.resumed else []
            if not found:  # its actor never started (e.g. its node died first): no run to close
                return
            run_id = self.runs[trial.trial_id] = found[0].info.run_id
        ran = (trial.last_result or {}).get("training_iteration", 0)
        planned = effective_config(trial.config).get("epochs")
        client.set_tag(run_id, STATUS_TAG, end_status(failed, ran, planned))
        client.set_tag(run_id, OUTCOME_TAG, outcome(failed, ran, planned))
        log_percentages(client, run_id)
        if failed and trial.error_file:
            error = Path(trial.error_file).read_text(errors="replace").strip().splitlines()
            client.set_tag(run_id, ERROR_TAG, (error[-1] if error else "unknown error")[:5000])
        client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


def outcome(failed: bool, ran: int, planned: Any) -> str:
    """How a trial ended, in the words a runs table column can show: 'completed (20 epochs)',
    'stopped early at epoch 2 of 20', 'failed at epoch 3' (the status tag keeps end_status's word)."""
    status = end_status(failed, ran, planned)
    if status == "errored":
        return f"failed at epoch {ran + 1}" if ran else "failed before its first epoch"
    if status == "stopped early":
        return f"stopped early at epoch {ran} of {planned}"
    return f"completed ({ran} epochs)"


def log_percentages(client: Any, run_id: str) -> None:
    """Each accuracy's history again as `<name>_pct`, in percent, the unit every report shows it in.

    design.md keeps accuracies as fractions in data (`val_acc` 0.9844); the reports say 98.44 %. The
    unit in the name lets a student read the runs table against a report without converting; the
    fraction stays for code that reads it. Copied when the trial ends, in one batch.
    """
    from mlflow.entities import Metric

    from reports.units import is_percent

    run = client.get_run(run_id)
    copies = [Metric(f"{key}_pct", 100 * p.value, p.timestamp, p.step)
              for key in run.data.metrics if is_percent(key) and "/" not in key and f"{key}_pct" not in run.data.metrics
              for p in client.get_metric_history(run_id, key)]
    if copies:
        client.log_batch(run_id, metrics=copies)


# MLflow's UI shows a run's name, date and duration by default, no param, metric or tag. A shared view
# (an experiment tag its UI reads for `?viewStateShareKey=KEY`) can name the columns a student needs.
VIEW_TAG = "mlflow.sharedViewState."


def view_key(experiment: str) -> str:
    return "tune-lab-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in experiment)


def runs_view(header: dict[str, Any], parent_run_id: str) -> dict[str, Any]:
    """The runs table of one search: its trial runs (under their parent), with the searched parameters,
    each trial's outcome, its epochs and the searched metric on validation and test, in the reports' unit."""
    from reports.units import is_percent

    metric = header["metric"]
    shown = [m for m in (metric, metric.replace("val_", "test_", 1)) if m in header.get("metrics", [])]
    metrics = [f"{m}_pct" if is_percent(m) else m for m in shown]
    return {"searchFilter": f"tags.mlflow.parentRunId = '{parent_run_id}'",
            "selectedColumns": [*(f"params.`{k}`" for k in header.get("varied", [])), f"tags.`{OUTCOME_TAG}`",
                                "metrics.`training_iteration`", *(f"metrics.`{m}`" for m in metrics)]}


def _spec(tags: dict[str, str]) -> dict[str, Any]:
    """The search's header stored on its parent run (reports.source.SPEC_TAG); {} where there is none."""
    from reports.source import SPEC_TAG

    try:
        return json.loads(tags.get(SPEC_TAG) or "{}")
    except ValueError:
        return {}


def flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Ray's nested parameters under flat names ('case/epochs'), as MLflow and Optuna name them."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


class Store:
    """A search's MLflow store and its lab's experiment, opened before any run is made.

    Opening is the slow part of the driver's MLflow work (SQLAlchemy's engine, the schema
    check, and on a new SQLite store alembic's migrations: ~1-3 s here), and it makes no run,
    so a driver does it in a thread while Ray's processes start (tune_lab.runner).
    """

    def __init__(self, uri: str, lab: str, artifact_root: str | None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        with store_lock(uri):
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = experiment_id_for(self.client, lab, artifact_root)

    def start_run(self, run_name: str, tags: dict[str, str]) -> "SearchRun":
        return SearchRun.start(self, run_name, tags)


class SearchRun:
    """The parent run of one search, created on the driver before any trial starts
    (`Store.start_run`), or an interrupted search's, to continue it (`SearchRun.attach`)."""

    uri: str
    client: Any
    experiment_id: str
    run_id: str
    resumed: bool  # runs of an earlier driver exist: TrialRuns looks a trial's up before making one
    header: dict[str, Any]  # the search's facts (summary.json's header), from the parent's spec tag: names trial runs

    @classmethod
    def attach(cls, uri: str, run_id: str) -> "SearchRun":
        """The parent run of an interrupted search, to continue it."""
        from mlflow.tracking import MlflowClient

        self = cls.__new__(cls)
        self.uri, self.client, self.run_id = uri, MlflowClient(tracking_uri=uri), run_id
        run = self.client.get_run(run_id)
        self.experiment_id = run.info.experiment_id
        self.header = _spec(run.data.tags)
        self.client.update_run(run_id, status="RUNNING")
        self.resumed = True
        return self

    def trial_runs(self) -> dict[str, str]:
        """Trial id -> child run id, for every trial this search has logged (resumed ones too)."""
        children = self.client.search_runs(
            [self.experiment_id], f"tags.mlflow.parentRunId = '{self.run_id}'", max_results=50_000,
        )
        return {r.data.tags[TRIAL_ID_TAG]: r.info.run_id for r in children if TRIAL_ID_TAG in r.data.tags}

    @classmethod
    def start(cls, store: Store, run_name: str, tags: dict[str, str]) -> "SearchRun":
        """A new parent run in an opened store."""
        self = cls.__new__(cls)
        self.uri, self.client, self.experiment_id = store.uri, store.client, store.experiment_id
        # Open the UI on its model-training runs table, not the GenAI traces overview.
        self.client.set_experiment_tag(self.experiment_id, "mlflow.experimentKind", "custom_model_development")
        if tags.get("tune_lab.reproduce"):  # a reproduce's section: 'reproduce-lab3-quick-TIME/cell', not 'cell' again
            run_name = f"{tags['tune_lab.reproduce']}/{run_name}"
        self.run_id = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id
        self.header = _spec(tags)
        self.resumed = False
        if self.header:
            self.client.set_experiment_tag(self.experiment_id, VIEW_TAG + view_key(self.header["experiment"]),
                                           json.dumps(runs_view(self.header, self.run_id)))
        return self

    def view_url(self, ui: str = "http://127.0.0.1:5000") -> str:
        """The runs page of this search with its columns shown (`tune-lab ui` serves it at `ui`)."""
        return f"{ui}/#/experiments/{self.experiment_id}/runs?viewStateShareKey={view_key(self.header.get('experiment', ''))}"


    def run_history(self, run_id: str) -> Any:
        """A child run's history, one row per epoch, every metric it logged (reports.source.run_history)."""
        from reports.source import run_history

        return run_history(self.client, run_id, list(self.client.get_run(run_id).data.metrics))

    def trial_callback(self) -> TrialRuns:
        return TrialRuns(self.uri, self.experiment_id, self.run_id, resumed=self.resumed, header=self.header)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(key, str(value)) for key, value in params.items()])

    def mark_best(self, child_run_id: str | None) -> None:
        self.client.set_tag(self.run_id, "tune_lab.best_run_id", child_run_id or "")
        if child_run_id:
            self.client.set_tag(child_run_id, "tune_lab.best", "true")

    def end(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")
