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

from reports.record import Header, Status, Summary
from trainables.files import is_remote
from trainables.registry import LabData
from tune_lab import paths, spaces
from tune_lab.paths import SCHEDULER_STATE, STATE_FILE
from tune_lab.options import SearchOptions
from tune_lab.spaces import ASHA_DEFAULTS, Search, SearchSpaceError, param_space, scheduler, search_algorithm

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


def trial_resources(search: Search, opts: SearchOptions) -> tuple[dict[str, float], int]:
    """Each trial's CPUs and GPUs, and how many trials can run at once (see tune_lab.capacity)."""
    import ray

    from tune_lab import capacity

    now = ray.cluster_resources()
    workers = capacity.autoscaler_workers() if opts.address else None
    reach = capacity.capacity(now, workers)
    if opts.cpus_per_trial is not None:
        cpus = opts.cpus_per_trial
    elif opts.address:  # a cluster's CPUs are spread over its nodes, and a trial runs on one: one each
        cpus = 1.0
    else:
        cpus = capacity.default_cpus(now.get("CPU", 1.0), search.trial_count(opts.num_samples))
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else (search.spec.gpu_fraction if reach["GPU"] else 0.0)
    resources = {"cpu": cpus, "gpu": gpus}
    short = [(flag, wanted, kind) for flag, wanted, kind in (("--gpus-per-trial", gpus, "GPU"), ("--cpus-per-trial", cpus, "CPU"))
             if wanted > now.get(kind, 0.0)]
    if short and not opts.address:
        flag, wanted, kind = short[0]
        raise SearchSpaceError(f"{flag} {wanted:g}: the cluster has {now.get(kind, 0.0):g} {kind}(s)")
    slots = capacity.slots(resources, reach)
    if short:  # a joined cluster may autoscale: its GPU workers often do not exist until trials ask
        flag, wanted, kind = short[0]
        if opts.max_concurrent:
            slots = opts.max_concurrent
            how = f"{slots} trial(s) at once (--max-concurrent)"
        elif workers is not None and reach[kind] >= wanted:
            how = f"up to {slots} trial(s) at once as its autoscaler adds nodes (its config allows {reach[kind]:g} {kind}s)"
        else:  # the autoscaler's limits are not readable from this driver (KubeRay, a laptop)
            slots = search.trial_count(opts.num_samples) or slots
            how = f"up to {slots} trial(s) at once as nodes arrive; pass --max-concurrent N to hold it to N"
        print(f"tune-lab: {flag} {wanted:g}, but the cluster has {now.get(kind, 0.0):g} {kind}(s) now: trials wait "
              f"for its autoscaler to add nodes that have them; {how}", file=sys.stderr, flush=True)
    return resources, slots


def search_header(search: Search, opts: SearchOptions, experiment: str, dataset: str, folder: str) -> Header:
    """The search-level facts of summary.json, also stored on the MLflow parent run."""
    scheduler_name = opts.scheduler or search.scheduler
    args = (search.scheduler_args or ASHA_DEFAULTS) if scheduler_name in ("asha", "promotion") else {}
    rungs = spaces.rungs(search, scheduler_name)  # where the scheduler judges trials (run_trial checkpoints there)
    caps = []
    if scheduler_name == "promotion":
        from tune_lab.schedulers import promotion_caps

        capped = promotion_caps(rungs, search.trial_count(opts.num_samples), args["reduction_factor"])
        caps = [capped[r] for r in rungs]  # the most each rung promotes by rank, as the scheduler is built
    return {
        "experiment": experiment, "lab": search.lab, "search": search.name, "search_file": str(search.path),
        "description": search.description, "dataset": dataset, "metric": search.metric, "mode": search.mode,
        "metrics": list(search.spec.metrics),
        "varied": search.varied_by_cases() + list(search.params),
        "sweeps": search.sweeps, "variants": search.variants,
        "params": {name: {p.distribution: p.args} for name, p in search.params.items()},
        "fixed": search.fixed, "algorithm": search.algorithm, "scheduler": scheduler_name,
        "scheduler_args": args, "rungs": rungs, "rung_caps": caps, "storage": folder, "repeats": search.repeats,
        "subset": opts.subset,  # training samples kept (--subset): a lab's published figure needs them all
        "lab_source": search.spec.source,  # a lab of one's own: where `report` / `resume` import it from again
    }


def save_state(search: Search, opts: SearchOptions, folder: str, tracking: dict[str, Any]) -> None:
    from tune_lab.results import write_json

    write_json({"search": search.to_dict(), "options": dataclasses.asdict(opts), "tracking": tracking,
                "lab_source": search.spec.source}, folder, STATE_FILE)  # where `resume` imports a lab of one's own from


def load_state(folder: Path) -> tuple[Search, SearchOptions, dict[str, Any]]:
    state = json.loads((folder / STATE_FILE).read_text())
    return Search.from_dict(state["search"]), SearchOptions(**state["options"]), state["tracking"]


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
    from tune_lab.ray_internals import quieted, require_tested_ray, set_callbacks

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
        from ray import tune

        from reports.source import SPEC_TAG
        from reports.facts import closing_lines, description as run_description
        from reports.table import format_best, format_table
        from trainables.loop import run_trial
        from tune_lab.driver_state import DriverStateKeeper
        from tune_lab.placement import PlacementCallback, add_placement
        from tune_lab.report import log_to_mlflow, run_header, write_report
        from tune_lab.results import read_json, summarise, write_json
        from tune_lab.schedulers import add_events
        from tune_lab.tensorboard import EventFiles
        from tune_lab.tracking import SearchRun

        phases.lap("imports")  # Ray Tune and tune-lab's driver modules
        spec = search.spec
        resources, slots = trial_resources(search, opts)
        go_on.decide(True)
        data, uri, store = prepared.result()
        phases.lap("waiting_for_data_and_store")  # what is left of them once Ray is up
        print(f"tune-lab: lab {search.lab}, search {search.name}, dataset {data.name} ({split_line(data, search)}); "
              f"results in {folder}", flush=True)
        header = search_header(search, opts, experiment, data.name, folder)
        header.update(run_header(search, opts, split_line(data, search)))  # split sizes, --set, --seed (reports.facts)
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
        placement = PlacementCallback()
        callbacks = [parent.trial_callback(), placement]
        callbacks.append(EventFiles(folder, header))  # one TensorBoard run per trial (`tune-lab tensorboard`)
        if not is_remote(folder):  # an object store writes whole objects: only local files can be cut off
            callbacks.append(DriverStateKeeper(folder))

        trainable = tune.with_resources(
            tune.with_parameters(run_trial, lab=spec, data=data, metric=search.metric, mode=search.mode,
                                 pause_epochs=tuple(header["rungs"]),
                                 deterministic=opts.deterministic),
            resources,
        )
        if resume:
            # Ray restores the search space, scheduler, searcher and trial states from the
            # experiment folder; the callbacks are replaced by fresh ones of this driver.
            # Its reading of the trials' results warns, a line each, of every trial that has none yet:
            # those still pending at the stop, which start now (issue 18's kill -9: 14 such lines).
            with quieted("ray.tune.analysis.experiment_analysis"):
                # Trials a dead node took down are errored in Ray's state: they run again; a search without one
                # keeps its failed trials failed.
                lost_before = bool((read_json(Path(folder) / "summary.json") or {}).get("node_lost"))
                tuner = tune.Tuner.restore(folder, trainable=trainable, resume_unfinished=True,
                                           resume_errored=lost_before)
            set_callbacks(tuner, callbacks, progress)
        else:
            tuner = _new_tuner(search, opts, trainable, slots, callbacks, root, experiment, progress)
            save_state(search, opts, folder, tracking)
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
        add_placement(summary, placement.records())
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
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists() and not go_on.wait():
        return data, None, None
    with phases.timed("mlflow_store"):
        return data, uri, Store(uri, search.lab, paths.artifact_root(uri))


def split_line(data: LabData, search: Search) -> str:
    """The samples per split that the trials use, for the opening line: one entry per distinct
    data filter among the search's settings (seq2seq's max_length filters, the others do not)."""
    return "; ".join(dict.fromkeys(data.trial_split(config) for config in search.trial_configs()))


def unfinished_trials(folder: str) -> set[str]:
    """Trials Ray left pending or running: after Ctrl-C, what `tune-lab resume` will continue."""
    from ray.tune import ExperimentAnalysis

    from tune_lab.schedulers import stopped_while_waiting

    unfinished = {t.trial_id for t in ExperimentAnalysis(folder).trials if t.status not in ("TERMINATED", "ERROR")}
    return unfinished - stopped_while_waiting(folder)  # promotion ASHA stopped these at a rung


def _new_tuner(search: Search, opts: SearchOptions, trainable: Any, slots: int,
               callbacks: list[Any], root: str, experiment: str, progress: Any = None) -> Any:
    from ray import tune

    from trainables.config import defaults

    spec = search.spec
    space = {**defaults(spec.config), **param_space(search, opts.seed)}
    max_concurrent = opts.max_concurrent or (slots if search.algorithm == "optuna" else None)
    rungs = spaces.rungs(search, opts.scheduler)
    search_alg = search_algorithm(search, opts.seed, first_rung=rungs[0] if rungs else None)
    if rungs:  # a trial waiting at a rung must not hold a place under the concurrency limit
        from tune_lab.schedulers import PauseAwareLimiter, PauseAwareVariantGenerator

        slots = min(slots, max_concurrent or slots)
        if search.algorithm == "optuna":
            search_alg = PauseAwareLimiter(search_alg, max_concurrent)
        else:
            search_alg = PauseAwareVariantGenerator(max_concurrent=max_concurrent or 0,
                                                    random_state=spaces.draw_seed(opts.seed))
        max_concurrent = None
    # Where the scheduler keeps its decisions, so that `tune-lab resume` keeps them (a local folder only).
    state_file = f"{paths.experiment_dir(root, experiment)}/{SCHEDULER_STATE}" if not is_remote(root) else None
    if state_file:  # a new search in the folder of an old one must not inherit its rung decisions
        Path(state_file).unlink(missing_ok=True)
    reporter = progress or tune.CLIReporter(
        parameter_columns=list(search.params) + [f"case/{k}" for k in search.varied_by_cases()],
        # train/val metrics, and the searched one whatever its name (a GAN's fid or cond_acc)
        metric_columns={"training_iteration": "epoch",
                        **{m: m for m in spec.metrics if m.startswith(("train", "val")) or m == search.metric}},
        sort_by_metric=True, max_report_frequency=15,
    )
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=search.metric, mode=search.mode,
            search_alg=search_alg,
            scheduler=scheduler(search, opts.scheduler, slots=slots, state_file=state_file,
                                trials=search.trial_count(opts.num_samples)),
            num_samples=opts.num_samples or search.num_samples,
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=experiment, storage_path=root, callbacks=callbacks, progress_reporter=reporter, verbose=1,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=search.metric, checkpoint_score_order=search.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        ),
    )
