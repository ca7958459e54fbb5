"""MLflow: one experiment per lab, one parent run per search, one child run per trial.

Trials are logged from the driver by `TrialRuns`, a Tune callback; the parent-run tag nests them.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ray.tune import Callback
from ray.tune.utils import flatten_dict  # nested params under flat names ('case/epochs'), as MLflow names them

from reports.record import Status, end_status
from reports.source import ERROR_TAG, STATUS_TAG, TRIAL_ID_TAG
from labspec.config import effective_config, trained_with

# A trial run's end in words (Status.STOPPED_EARLY at epoch 2 of 20): a column the runs table can show.
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
    from filelock import FileLock

    lock = Path(uri.removeprefix("sqlite:///") + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock):
        yield


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
        self.outage = Outage(uri, parent_run_id)
        if resumed:  # epochs an earlier driver kept while the server was away, sent before any trial reruns
            self.outage.send_spooled(self._send)

    def client(self) -> Any:
        """The tracking client, patient while a tracking server is away (Outage.patient)."""
        from mlflow.tracking import MlflowClient

        return self.outage.patient(MlflowClient(tracking_uri=self.uri))

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
            tags.update(owner_tags())  # whose search (tune-lab submit): the UI and search_runs filter on it
            run = found[0] if found else client.create_run(self.experiment_id, run_name=self.run_name(trial), tags=tags)
            self.runs[trial.trial_id] = run.info.run_id
            if found:  # a resumed search: the epochs its run has (a metric's latest value is at its last step)
                self.logged_to[trial.trial_id] = int(run.data.metrics.get("training_iteration", 0))
        # The values the trial trains with (a sweep's case applied: `epochs`, not `epochs` and `case/epochs`; its
        # seeds per configuration); a run logged before by another driver keeps its params (MLflow refuses to
        # change one).
        logged = client.get_run(self.runs[trial.trial_id]).data.params if self.resumed else {}
        values = flatten_dict(trained_with(trial.config, self.header.get("repeats") or 1))
        params = [Param(key, str(value)) for key, value in values.items() if key not in logged]
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
        """The epoch's metrics, queued in order and sent at once where the server answers; while it is
        away they wait in `pending` (Outage) and go out, in order, when it answers again."""
        step, now = result.get("training_iteration", iteration), int(time.time() * 1000)
        metrics = {key: float(value) for key, value in result.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
        rerun = step <= self.logged_to.get(trial.trial_id, 0)  # an epoch run again: compared when sent
        if not rerun:
            self.logged_to[trial.trial_id] = step
        self.outage.pending.append(Epoch(trial.trial_id, self.runs[trial.trial_id], step, now, metrics, rerun))
        self.flush(wait=False)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """While the server is away, try again every few seconds even when no trial reports."""
        if self.outage.pending and self.outage.due():
            self.flush(wait=False)

    def flush(self, wait: bool, trial_id: str | None = None) -> None:
        """Send the kept epochs, oldest first (all, or up to `trial_id`'s last); with `wait`, until
        they are sent or the outage limit passes (the search then stops, Outage.give_up)."""
        self.outage.flush(self._send, wait, trial_id)

    def _send(self, epoch: "Epoch", retried: bool) -> None:
        """One epoch to its run, exactly once: a rerun epoch without the values its run already has
        (see the class docstring); a retried one without what an earlier try may have written."""
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        metrics = [Metric(key, value, epoch.timestamp, epoch.step) for key, value in epoch.metrics.items()]
        if epoch.rerun:
            if epoch.trial_id not in self.logged:
                self.logged[epoch.trial_id] = self._history(client, epoch.run_id)
            before = self.logged[epoch.trial_id].get(epoch.step, {})
            metrics = [m for m in metrics if before.get(m.key) != m.value]
        else:
            self.logged.pop(epoch.trial_id, None)
        if retried and metrics:  # a try that timed out may have reached the server: its points carry our timestamp
            there = {(p.key, p.step, p.timestamp) for key in {m.key for m in metrics}
                     for p in client.get_metric_history(epoch.run_id, key)}
            metrics = [m for m in metrics if (m.key, m.step, m.timestamp) not in there]
        if metrics:
            client.log_batch(epoch.run_id, metrics=metrics)

    @staticmethod
    def _history(client: Any, run_id: str) -> dict[int, dict[str, float]]:
        """Epoch -> metric -> the latest value the run has."""
        history: dict[int, dict[str, float]] = {}
        for key in client.get_run(run_id).data.metrics:
            for point in sorted(client.get_metric_history(run_id, key), key=lambda p: p.timestamp):
                history.setdefault(point.step, {})[key] = point.value
        return history

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.flush(wait=True, trial_id=trial.trial_id)  # its run is closed with every epoch in it
        self.end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.flush(wait=True, trial_id=trial.trial_id)
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
    Status.STOPPED_EARLY + ' at epoch 2 of 20', 'failed at epoch 3' (the status tag keeps end_status's word)."""
    status = end_status(failed, ran, planned)
    if status == Status.ERRORED:
        return f"failed at epoch {ran + 1}" if ran else "failed before its first epoch"
    if status == Status.STOPPED_EARLY:
        return f"{Status.STOPPED_EARLY} at epoch {ran} of {planned}"
    return f"completed ({ran} epochs)"


def owner_tags() -> dict[str, str]:
    """Whose search this is, where `tune-lab submit` said ($TUNE_LAB_OWNER in the job's environment): on a
    class's shared server every driver runs as the head's one user, and MLflow's client sets no user of its
    own. `mlflow.user` is the UI's User column; `tags.mlflow.user = 'NAME'` filters a student's runs."""
    who = (os.environ.get("TUNE_LAB_OWNER") or "").strip()
    return {"mlflow.user": who, "tune_lab.owner": who} if who else {}


# How long a tracking server may be away before the search stops (one line; `tune-lab resume` goes on).
OUTAGE_LIMIT_ENV, OUTAGE_LIMIT_S = "TUNE_LAB_MLFLOW_OUTAGE_S", 600.0
RETRY_EVERY_S = 3.0
EXIT_OUTAGE = 130  # as an interrupted search: resumable
# A server that is not there (refused, reset, timed out, a proxy's 502-504), not one that refused the request.
_UNREACHABLE = re.compile(r"Failed to establish a new connection|Connection refused|Connection aborted|"
                          r"Connection reset|RemoteDisconnected|timed out|Max retries exceeded|"
                          r"error code 50[234]|Bad Gateway|Service Unavailable|Gateway Time", re.I)


def unreachable(exc: BaseException, uri: str) -> bool:
    """Whether `exc` says that the tracking server at `uri` did not answer (an embedded store never blinks)."""
    return uri.startswith(("http://", "https://")) and bool(_UNREACHABLE.search(str(exc)))


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """One try per request: MLflow's own client retries a refused connection with back-off for about two
    minutes and a POST that timed out as well (a second copy of its metrics); Outage retries instead,
    without stalling Tune's loop, and checks what a timed-out try may have written."""
    saved = {key: os.environ.get(key) for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Epoch:
    """One reported epoch of one trial, kept until its run has it."""

    trial_id: str
    run_id: str
    step: int
    timestamp: int  # ms; the same on every try, so that a retry can tell what the server already has
    metrics: dict[str, float]
    rerun: bool  # an epoch the run may already have (a trial resumed from an older checkpoint)


class Outage:
    """The driver's side of a tracking server that blinks: epochs kept in order while it is away
    (one line on stderr when it goes, one when it is back), calls that need an answer (a trial's
    new run, its end) retried until it answers, and, past the limit ($TUNE_LAB_MLFLOW_OUTAGE_S,
    600 s), the search stopped in one line with the kept epochs spooled to a file that the
    `tune-lab resume` of this search sends first: never a lost epoch, never one sent twice."""

    def __init__(self, uri: str, parent_run_id: str) -> None:
        self.uri, self.parent_run_id = uri, parent_run_id
        self.pending: list[Epoch] = []
        self.away_since: float | None = None
        self.last_try = 0.0
        self.limit = float(os.environ.get(OUTAGE_LIMIT_ENV) or OUTAGE_LIMIT_S)
        self.retried: set[int] = set()  # id() of kept epochs whose send failed once
        self.caught_up = 0  # epochs sent since the server came back

    def spool(self) -> Path:
        """Where a stopped search's kept epochs wait for its resume (the driver's machine: the head)."""
        cache = Path(os.environ.get("TUNE_LAB_CACHE") or Path.home() / ".cache" / "tune-lab")
        return cache / "mlflow-spool" / f"{self.parent_run_id}.json"

    def due(self) -> bool:
        return time.monotonic() - self.last_try >= RETRY_EVERY_S

    def flush(self, send: Callable[[Epoch, bool], None], wait: bool, trial_id: str | None = None) -> None:
        last = max((i for i, e in enumerate(self.pending) if e.trial_id == trial_id), default=-1) \
            if trial_id is not None else len(self.pending) - 1
        while last >= 0:
            epoch = self.pending[0]
            self.last_try = time.monotonic()
            try:
                with fail_fast():
                    send(epoch, id(epoch) in self.retried)
            except Exception as exc:  # noqa: BLE001  only a server that is away is kept for later
                if not unreachable(exc, self.uri):
                    raise
                self.retried.add(id(epoch))
                self.away(exc)
                if not wait:
                    return
                time.sleep(RETRY_EVERY_S)
                continue
            self.retried.discard(id(epoch))
            self.pending.pop(0)
            self.caught_up += self.away_since is not None
            last -= 1
        self.back()

    def away(self, exc: BaseException) -> None:
        """Note the server gone (one line, once), or stop the search once the limit has passed."""
        now = time.monotonic()
        if self.away_since is None:
            self.away_since = now
            print(f"tune-lab: MLflow at {self.uri} is not answering; keeping each epoch's metrics here and sending "
                  f"them when it answers (the search stops after {self.limit:g} s without it)", file=sys.stderr, flush=True)
        elif now - self.away_since > self.limit:
            self.give_up()

    def back(self) -> None:
        if self.away_since is not None and not self.pending:
            print(f"tune-lab: MLflow at {self.uri} answers again after {time.monotonic() - self.away_since:.0f} s; "
                  f"the {self.caught_up} epoch(s) kept meanwhile are sent", file=sys.stderr, flush=True)
            self.away_since, self.caught_up = None, 0

    def give_up(self) -> None:
        """Past the limit: the kept epochs to the spool, one line, and the driver ends at once, as a killed one
        does (the search's own copy of its state makes it resumable; Ray's local processes share its fate)."""
        path = self.spool()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps([e.__dict__ for e in self.pending]))
        os.replace(partial, path)
        print(f"tune-lab: MLflow at {self.uri} has not answered for {self.limit:g} s: search stopped, "
              f"{len(self.pending)} epoch(s) kept in {path}; once the server is back: tune-lab resume EXPERIMENT",
              file=sys.stderr, flush=True)
        os._exit(EXIT_OUTAGE)

    def send_spooled(self, send: Callable[[Epoch, bool], None]) -> None:
        """A resumed search: the epochs its stopped driver kept, before anything else, then the spool gone."""
        path = self.spool()
        if not path.is_file():
            return
        self.pending[:0] = [Epoch(**e) for e in json.loads(path.read_text())]
        self.retried.update(id(e) for e in self.pending)  # some may have reached the server before it went
        self.flush(send, wait=True)
        path.unlink()

    def patient(self, client: Any) -> Any:
        """`client`, whose calls wait for an away server (retried every few seconds, to the limit)."""
        return _Patient(client, self)


class _Patient:
    """An MlflowClient whose calls are retried while its server is away (Outage). Used for the calls
    that must be answered before Tune goes on: a trial's run made, its params, its end."""

    def __init__(self, client: Any, outage: Outage) -> None:
        self._client, self._outage = client, outage

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            while True:
                try:
                    with fail_fast():
                        result = method(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001
                    if not unreachable(exc, self._outage.uri):
                        raise
                    self._outage.away(exc)
                    time.sleep(RETRY_EVERY_S)
                    continue
                self._outage.back()
                return result
        return call


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
        self.run_id = self.client.create_run(self.experiment_id, run_name=run_name, tags={**owner_tags(), **tags}).info.run_id
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
