"""MLflow: one experiment per lab, one parent run per search, one child run per trial.

Trials are logged from the driver by Ray's MLflowLoggerCallback (the parent-run tag nests
them); this module adds what the callback does not know: how each trial ended.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from pathlib import Path
from typing import Any, Iterator

from ray.air.integrations.mlflow import MLflowLoggerCallback

from reports.source import ERROR_TAG, STATUS_TAG, TRIAL_ID_TAG
from trainables.config import effective_config

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


def trial_status(trial: Any, failed: bool) -> str:
    if failed:
        return "errored"
    ran = (trial.last_result or {}).get("training_iteration", 0)
    planned = effective_config(trial.config).get("epochs", ran)  # a sweep case may set its own epochs
    return "stopped early" if ran < planned else "completed"


class TrialRunCallback(MLflowLoggerCallback):
    """Ray's MLflow logger, plus each trial's final status and error as tags.

    Each epoch's metrics go to MLflow in one batch: the stock callback makes one call per
    metric, ~0.6 s per result on an SQLite store, which stalls Tune's event loop.
    """

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        from mlflow.entities import Metric

        step = result.get("training_iteration", iteration)
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, step)
            for key, value in result.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
        self._client().log_batch(self._trial_runs[trial], metrics=metrics)

    def log_trial_start(self, trial: Any) -> None:
        """A resumed trial keeps its run: found by its trial id among the parent's children."""
        if trial not in self._trial_runs:
            client = self._client()
            found = client.search_runs(
                [self.mlflow_util.experiment_id],
                f"tags.mlflow.parentRunId = '{self.tags['mlflow.parentRunId']}' and tags.`{TRIAL_ID_TAG}` = '{trial.trial_id}'",
                max_results=1,
            )
            if found:
                self._trial_runs[trial] = found[0].info.run_id
                client.update_run(found[0].info.run_id, status="RUNNING")
        super().log_trial_start(trial)
        self._client().set_tag(self._trial_runs[trial], TRIAL_ID_TAG, trial.trial_id)

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        if trial not in self._trial_runs:
            # Its actor never started (e.g. the node it was placed on died first): no run to
            # close, and Ray's own log_trial_end would raise KeyError and end the whole search.
            return
        run_id = self._trial_runs[trial]
        client = self._client()
        client.set_tag(run_id, STATUS_TAG, trial_status(trial, failed))
        if failed and trial.error_file:
            error = Path(trial.error_file).read_text(errors="replace").strip().splitlines()
            client.set_tag(run_id, ERROR_TAG, (error[-1] if error else "unknown error")[:5000])
        super().log_trial_end(trial, failed)



class SearchRun:
    """The parent run of one search, created on the driver before any trial starts."""

    @classmethod
    def attach(cls, uri: str, run_id: str) -> "SearchRun":
        """The parent run of an interrupted search, to continue it."""
        from mlflow.tracking import MlflowClient

        self = cls.__new__(cls)
        self.uri, self.client, self.run_id = uri, MlflowClient(tracking_uri=uri), run_id
        run = self.client.get_run(run_id)
        self.experiment_id = run.info.experiment_id
        self.experiment_name = self.client.get_experiment(self.experiment_id).name
        self.client.update_run(run_id, status="RUNNING")
        return self

    def trial_runs(self) -> dict[str, str]:
        """Trial id -> child run id, for every trial this search has logged (resumed ones too)."""
        children = self.client.search_runs(
            [self.experiment_id], f"tags.mlflow.parentRunId = '{self.run_id}'", max_results=50_000,
        )
        return {r.data.tags[TRIAL_ID_TAG]: r.info.run_id for r in children if TRIAL_ID_TAG in r.data.tags}

    def __init__(self, uri: str, lab: str, run_name: str, artifact_root: str | None, tags: dict[str, str]) -> None:
        from mlflow.tracking import MlflowClient

        self.uri, self.experiment_name = uri, lab
        with store_lock(uri):
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = experiment_id_for(self.client, lab, artifact_root)
        # Open the UI on its model-training runs table, not the GenAI traces overview.
        self.client.set_experiment_tag(self.experiment_id, "mlflow.experimentKind", "custom_model_development")
        self.run_id = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id

    def trial_callback(self) -> TrialRunCallback:
        return TrialRunCallback(
            tracking_uri=self.uri, experiment_name=self.experiment_name,
            tags={"mlflow.parentRunId": self.run_id},
        )

    def log_params(self, params: dict[str, Any]) -> None:
        for key, value in params.items():
            self.client.log_param(self.run_id, key, value)

    def log_artifacts(self, folder: str, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, folder, artifact_path)

    def mark_best(self, child_run_id: str | None) -> None:
        self.client.set_tag(self.run_id, "tune_lab.best_run_id", child_run_id or "")
        if child_run_id:
            self.client.set_tag(child_run_id, "tune_lab.best", "true")

    def end(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")
