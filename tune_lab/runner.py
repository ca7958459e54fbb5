"""Run one search: data once on the driver, trials through Ray Tune, every trial in MLflow."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import threading
import time
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

from reports.record import Status, Summary
from labspec.files import is_remote
from tune_lab import paths
from tune_lab import plan as tuner_plan
from tune_lab.options import SearchOptions
from tune_lab.spaces import Search

# The classic trial table (refreshed every 15 s) rather than a result box per trial, and no
# warning each time Ray snapshots an experiment whose best checkpoint just improved.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


class Phases:
    """Where a driver's seconds go: summary.json's `driver_s`, from which benchmarks/overhead.py
    makes docs/benchmarks.md's breakdown of a search's fixed overhead.

    `lap(name)`: the main thread's phases, one after another (each the time since the last lap);
    `timed(name)`: a phase of another thread (the data and the MLflow store, while Ray starts).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self.last, 3)
        self.last = now

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - began, 3)


def banner(message: str) -> None:
    print(f"\n*** {message} ***\n", file=sys.stderr, flush=True)


def load_dataset(search: Search, opts: SearchOptions) -> Any:
    """Load the search's data once; a digit lab with no dataset asked for may fall back."""
    from trainables.data import DatasetUnavailable

    spec = search.spec
    load = spec.load().load_data
    asked = opts.dataset or search.dataset
    name = asked or spec.default_dataset
    try:
        return load(name, opts.data_dir, subset=opts.subset)
    except DatasetUnavailable as exc:
        if asked or spec.fallback_dataset is None:
            raise
        banner(
            f"WARNING: {exc}. Falling back to {spec.fallback_dataset!r} (scikit-learn's bundled 8x8 digits); "
            f"results are NOT comparable with {name}. Pass --dataset {name} to refuse the fallback."
        )
        return load(spec.fallback_dataset, opts.data_dir, subset=opts.subset)


# OpenMP's default "active" wait makes an idle torch thread spin for its next task. On a
# machine whose cores are all taken by trials, a trial with 2 threads then waits for a core its
# own spinning sibling holds: an MLP epoch was measured ~25x slower than with 1 thread.
# Passive waiting costs nothing measurable at 1 thread. Trial processes inherit it from the
# local Ray this driver starts (a joined cluster's nodes keep their own environment).
TRIAL_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def start_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Join a cluster, or start a quiet local Ray; returns whether this call started it.

    `num_gpus` None: the GPUs Ray finds (the test suite passes 0, so that it means the CPU on a GPU host too)."""
    import ray

    if ray.is_initialized():
        return False
    from tune_lab import user_labs

    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address:
        # Labs of one's own (--labs) travel to the cluster's nodes with the job: Ray's py_modules.
        ray.init(address=address, runtime_env=user_labs.runtime_env(), **kwargs)
    else:
        for key, value in TRIAL_ENV.items():
            os.environ.setdefault(key, value)  # before Ray's processes start, so its workers inherit it
        user_labs.export_pythonpath()  # the --labs files' folders: trial processes import the labs' modules by name
        from tune_lab.ray_internals import quiet_default_auth_notice

        with quiet_default_auth_notice():
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus, **kwargs)
    return True


def run_search(search: Search, opts: SearchOptions, resume: dict[str, Any] | None = None,
               tags: dict[str, str] | None = None, progress: Any = None) -> dict[str, Any]:
    """Run the search to the end and return its summary (also written as summary.json).

    `tags` go on a new search's MLflow parent run besides tune-lab's own (a reproduce names itself there).
    `progress`: a Ray Tune ProgressReporter in place of the trial table (a notebook's, tune_lab.progress).

    With `resume` (the tracking ids saved in search.json), continue the search in
    opts.experiment where an interrupted driver left it: Ray restores finished trials
    as they were and continues unfinished ones from their checkpoints, and the trials keep
    their MLflow runs under the same parent run.
    """
    from tune_lab import ray_internals
    from tune_lab.ray_internals import require_tested_ray

    require_tested_ray()  # before Ray is imported: one line on a Ray tune-lab was not tested with
    root = paths.usable_root(paths.results_root(opts.storage))
    experiment = opts.experiment or f"{search.lab}-{search.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    opts = dataclasses.replace(opts, experiment=experiment)
    from tune_lab.capacity import job_cap

    opts = dataclasses.replace(opts, max_concurrent=job_cap(opts.max_concurrent))  # a shared cluster's per-job cap
    folder = paths.experiment_dir(root, experiment)
    if is_remote(root) and not resume:  # a remote results root needs a tracking server: said before anything starts
        paths.tracking_uri(opts.tracking_uri, root)

    # Ray's processes take seconds to start, most of them spent waiting: load the data and open
    # the MLflow store meanwhile (docs/benchmarks.md, "A search's own cost"). Ray starts in this
    # thread, which keeps its SIGTERM handling; no run is made until Ray is up and has the
    # resources the search asks for.
    phases = Phases()
    go_on = Go()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tune-lab-prepare")
    prepared = pool.submit(_prepare, search, opts, root, resume, phases, go_on)
    pool.shutdown(wait=False)
    started_ray = False
    try:
        started_ray = start_ray(opts.address)
        phases.lap("ray_start")
        from reports.source import SPEC_TAG
        from reports.facts import closing_lines, description as run_description
        from reports.table import format_best, format_table
        from tune_lab.placement import add_placement
        from tune_lab.report import log_to_mlflow, write_report
        from tune_lab.results import summarise, write_json
        from tune_lab.schedulers import add_events
        from tune_lab.tracking import SearchRun

        phases.lap("imports")  # Ray Tune and tune-lab's driver modules
        plan = tuner_plan.make(search, opts)  # each trial's resources, the rungs, the scheduler: what Ray runs
        go_on.decide(True)
        data, uri, store = prepared.result()
        phases.lap("waiting_for_data_and_store")  # what is left of them once Ray is up
        header = plan.header(experiment, data, folder)
        print(f"tune-lab: lab {search.lab}, search {search.name}, dataset {data.name} ({header['split']}); "
              f"results in {folder}", flush=True)
        if resume:
            parent = SearchRun.attach(uri, resume["parent_run_id"])
        else:
            parent = store.start_run(experiment, tags={
                "tune_lab.lab": search.lab, "tune_lab.search": search.name, "tune_lab.dataset": data.name,
                "tune_lab.results": folder, "mlflow.note.content": run_description(header), SPEC_TAG: json.dumps(header),
                **(tags or {}),
            })
            parent.log_params({"dataset": data.name, "metric": search.metric, "algorithm": search.algorithm,
                               "scheduler": header["scheduler"], "repeats": search.repeats, **search.fixed})
        tracking = {"tracking_uri": uri, "experiment_id": parent.experiment_id, "parent_run_id": parent.run_id}
        tuner = plan.tuner(data, parent.trial_callback(), header, root, progress, resume=bool(resume))
        if not resume:
            plan.save(folder, tracking)  # search.json: what `tune-lab resume` runs again
        phases.lap("setup")  # the parent run, callbacks, the data into Ray's object store, the Tuner
        ray_internals.drop_state_dumps()  # a dying raylet's log tail: node_loss says it in one line
        grid = tuner.fit()
        phases.lap("trials")  # Tune's whole run: trial processes started, trained, stopped
        raylet_gone = ray_internals.raylet_exit() if started_ray else None  # before Ray is stopped below
        if started_ray:  # nothing below needs Ray. Stopped here, not in a thread beside the summary: a Ray object
            _stop_ray()  # freed by this thread while ray.shutdown() runs ends the process (exit 1, or a segfault)
            started_ray = False
        unfinished = unfinished_trials(folder)
        summary = summarise(grid, header, tracking=tracking, trial_runs=parent.trial_runs(), unfinished=unfinished,
                            run_history=parent.run_history)  # where a killed driver lost a trial's result files
        lost = node_loss(summary, raylet_gone)
        interrupted = bool(unfinished) or lost is not None
        if lost:  # not the trials' fault: what ran is kept, and `tune-lab resume` runs the lost trials again
            summary["node_lost"] = lost
        add_placement(summary, plan.placement.records())
        add_events(summary, folder, parent.client)  # promotion ASHA: where each trial was paused, promoted or stopped
        phases.lap("summary")
        summary["driver_s"] = phases.seconds
        write_json(summary, folder, "summary.json")
        if not interrupted:
            from tune_lab import pruning  # --keep-checkpoints: planned now (the report names only kept checkpoints), applied last

            pruned = pruning.plan(summary, opts.keep_checkpoints)  # the rows of trials not kept lose `checkpoint`
            report_dir = write_report(summary, folder, opts.data_dir)
            log_to_mlflow(summary, report_dir)
            parent.mark_best((summary["best"] or {}).get("mlflow_run_id"))
            failed = any(t["status"] == Status.ERRORED for t in summary["trials"])
            parent.end(failed=failed or summary["best"] is None)
            phases.lap("report_and_mlflow")
            summary["complete"] = True  # every trial run, report and MLflow done: nothing left to resume
            write_json(summary, folder, "summary.json")  # before the folders go: it never names a deleted one
            pruned_line = pruned.line(pruning.apply(pruned)) if pruned else None
    finally:
        go_on.decide(False)  # a search that failed before its store was needed makes none, and leaves no thread behind
        futures.wait([prepared])
        if started_ray:
            _stop_ray()
    if interrupted:
        if summary.get("node_lost"):
            print(f"\ntune-lab: {summary['node_lost']}; what ran is kept. Continue with: tune-lab resume {folder}",
                  file=sys.stderr)
        else:
            print(f"\ntune-lab: interrupted with {len(unfinished)} trial(s) unfinished (and any not yet started); "
                  f"nothing is lost. Continue with:\n  tune-lab resume {folder}", file=sys.stderr)
        summary["interrupted"] = True
        return summary
    print(f"\n{search.description or search.name} ({data.name}, best epoch of each trial by {search.metric})")
    print(format_table(summary))
    print(format_best(summary))
    print("\n".join(closing_lines(summary)))  # what was run: data, --set, seeds, changes from the lab
    print(f"\nReport: {folder}/report/report.html   Summary: {folder}/summary.json")
    print(f"MLflow: {uri} (experiment {search.lab!r}, run {experiment!r}); browse with `tune-lab ui`")
    print(f"  its trials with their settings, outcomes and {search.metric}: {parent.view_url()}")
    if pruned_line:
        print(pruned_line)
    return summary


def resume_search(folder: Path, address: str | None = None, progress: Any = None) -> dict[str, Any]:
    """Continue the interrupted search in `folder` and return its summary: `tune-lab resume`, `tune_lab.resume`
    (with a notebook's `progress`) and a reproduce's interrupted section. A state file cut off by the kill is
    restored from its last whole copy."""
    from tune_lab.ray_internals import require_tested_ray

    require_tested_ray()  # before driver_state imports Ray
    from tune_lab.driver_state import SNAPSHOT, StateCutOff, repair
    from tune_lab.usage import UsageError

    try:
        repaired = repair(folder)
    except StateCutOff as exc:
        raise UsageError(str(exc)) from None
    if repaired:
        print(f"tune-lab: the search was killed while Ray wrote its state, which was cut off ({', '.join(repaired)}); "
              f"restored the last whole copy from {folder / SNAPSHOT}", file=sys.stderr)
    from tune_lab import user_labs

    recorded = user_labs.recorded_lab(folder)  # a lab of one's own: imported again from where the search recorded it
    if recorded is not None:
        user_labs.ensure_lab(*recorded, where=f"resume {folder}")
    search, opts, tracking = tuner_plan.load_state(folder.resolve())
    opts.storage, opts.experiment = str(folder.resolve().parent), folder.name
    if address:
        opts.address = address
    return run_search(search, opts, resume=tracking, progress=progress)


# What a trial's error says when the process under it went with its node (Ray's words for a lost actor).
NODE_LOSS_ERRORS = ("ActorUnavailableError", "ActorDiedError", "NodeDiedError", "RayletError", "node died")


def node_loss(summary: Summary, raylet_gone: tuple[int, str] | None) -> str | None:
    """One line naming a Ray node that died under the search, or None: this machine's raylet exited (a Ray
    this driver started), or trials failed with the errors of a lost node (a joined cluster)."""
    lost = [t for t in summary["trials"] if t["status"] == Status.ERRORED
            and any(word in str(t.get("error")) for word in NODE_LOSS_ERRORS)]
    if raylet_gone is not None:
        code, log = raylet_gone
        return (f"this machine's Ray node died under the search (its raylet exited with code {code}; "
                f"{len(lost)} trial(s) lost their process; Ray's log: {log})")
    if lost:
        return (f"a Ray node died under the search: {len(lost)} trial(s) lost their process "
                f"({str(lost[0]['error'])[:120]}); Ray's logs: /tmp/ray/session_latest/logs on that node")
    return None


def _stop_ray() -> None:
    import ray

    ray.shutdown()


class Go:
    """The driver's word to `_prepare`'s thread: go on to make what a search records, or not
    (Ray could not start, or refused the resources asked for)."""

    def __init__(self) -> None:
        self.decided = threading.Event()
        self.go = False

    def decide(self, go: bool) -> None:
        if not self.decided.is_set():
            self.go = go
            self.decided.set()

    def wait(self) -> bool:
        self.decided.wait()
        return self.go


def _prepare(search: Search, opts: SearchOptions, root: str, resume: dict[str, Any] | None,
             phases: Phases, go_on: Go) -> tuple[Any, str | None, Any]:
    """The search's data, its tracking URI, and its MLflow store opened (a new search's lab
    experiment made; no run).

    Nothing is made for a search that fails first: the data is read before the store is opened,
    and a store that does not exist yet (a new SQLite file, its results root) is made only once
    the driver says go (Ray up, the resources there). An existing store opens at once.
    """
    from tune_lab.tracking import Store

    with phases.timed("data"):
        data = load_dataset(search, opts)
    if resume:  # the parent run exists: opening the store is all there is to do ahead
        from mlflow.tracking import MlflowClient

        with phases.timed("mlflow_store"):
            MlflowClient(tracking_uri=resume["tracking_uri"]).get_run(resume["parent_run_id"])
        return data, resume["tracking_uri"], None
    uri = paths.tracking_uri(opts.tracking_uri, root, make=False)  # the Store makes a new SQLite store's folder
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        with phases.timed("mlflow_imports"):  # ~3.5 s of SQLAlchemy and alembic, beside Ray's start, not after it
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        if not go_on.wait():
            return data, None, None
    with phases.timed("mlflow_store"):
        return data, uri, Store(uri, search.lab, paths.artifact_root(uri))


def unfinished_trials(folder: str) -> set[str]:
    """Trials Ray left pending or running: after Ctrl-C, what `tune-lab resume` will continue."""
    from ray.tune import ExperimentAnalysis

    from tune_lab.schedulers import stopped_while_waiting

    unfinished = {t.trial_id for t in ExperimentAnalysis(folder).trials if t.status not in ("TERMINATED", "ERROR")}
    return unfinished - stopped_while_waiting(folder)  # promotion ASHA stopped these at a rung
