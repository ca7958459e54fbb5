"""TensorBoard: every search writes event files, and `tune-lab tensorboard` serves them.

`EventFiles`, a Tune callback on the driver, writes one TensorBoard run per trial under
`<experiment folder>/tensorboard/<setting>/`: the run is named by the trial's setting as the
report's table names it ("optimizer=adam"), its scalars are the metrics the trial reported,
one point per epoch (step = Ray's training_iteration, as in MLflow), and the HParams plugin
gets the searched parameters with the lab's metrics (their last values), the searched metric
first, then those the report's table shows. Ray's own TensorBoard logger names its runs by
trial directory and has no HParams; these are served instead.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from reports.record import clean
from reports.table import setting_label, shown_metrics
from labspec.config import effective_config
from labspec.files import is_remote
from tune_lab import ray_internals

FOLDER = "tensorboard"  # beside summary.json in the experiment folder
TRIAL_FILE = "trial_id"  # in each run's folder: which trial the run is (a resumed driver finds it again)
MAX_NAME = 120  # characters of a run's folder name (a setting of many parameters is cut, then numbered)
RAY_KEYS = ray_internals.bookkeeping_keys()  # not metrics: pid, timestamp, time_total_s ...


def run_folder(logdir: Path, trial_id: str, label: str) -> Path:
    """The trial's run folder: the one it already has, else its setting's, numbered (#2, #3 ...)
    where another trial has the same setting (a grid repeated by num_samples)."""
    for marker in logdir.glob(f"*/{TRIAL_FILE}"):
        if marker.read_text().strip() == trial_id:
            return marker.parent
    name = label.replace(os.sep, "_").strip(". ")[:MAX_NAME] or trial_id
    folder, number = logdir / name, 1
    while folder.exists():
        number += 1
        folder = logdir / f"{name} #{number}"
    folder.mkdir(parents=True)
    (folder / TRIAL_FILE).write_text(trial_id)
    return folder


def hparam_value(value: Any) -> Any:
    """A value the HParams plugin can show: a number (numpy's made plain), a bool or a string."""
    value = clean(value)
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def session_end(failed: bool) -> Any:
    """The HParams plugin's end-of-session record: the trial succeeded or failed."""
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    status = Status.Value("STATUS_FAILURE" if failed else "STATUS_SUCCESS")
    content = HParamsPluginData(session_end_info=SessionEndInfo(status=status), version=0)
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams",
                                                                      content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag="_hparams_/session_end_info", metadata=metadata)])


class EventFiles(Callback):
    """One TensorBoard run per trial, written from the driver (tensorboardX writes in a thread).

    `header` is the search's header in summary.json (its `varied`, `fixed`, `sweeps` and
    `metrics`), from which a trial's setting is named as the reports name it. A trial
    resumed or restarted appends to its own run, starting with a "session start" at its first
    epoch: TensorBoard then drops what the run held from that epoch on, so epochs reported
    again replace the first report (as summary.json and MLflow keep the last report of an
    epoch). On remote storage (a URI) nothing is written.
    """

    def __init__(self, experiment_folder: str, header: dict[str, Any]) -> None:
        self.logdir = None if is_remote(experiment_folder) else Path(experiment_folder) / FOLDER
        self.header = header
        self.writers: dict[str, Any] = {}  # trial id -> its open SummaryWriter
        self.starting: set[str] = set()  # trials whose next result (re)starts their run

    def writer(self, trial: Any) -> Any:
        if trial.trial_id in self.writers:
            return self.writers[trial.trial_id]
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        config = effective_config(trial.config)
        setting = {k: config.get(k) for k in self.header["varied"]}
        label = setting_label({"setting": setting, "trial_id": trial.trial_id}, self.header)
        writer = SummaryWriter(str(run_folder(self.logdir, trial.trial_id, label)), flush_secs=30)
        experiment, start, _ = hparams({k: hparam_value(v) for k, v in setting.items()},
                                       dict.fromkeys(hparams_metrics(self.header), 0.0))
        for summary in (experiment, start):
            writer.file_writer.add_summary(summary)
        self.writers[trial.trial_id] = writer
        self.starting.add(trial.trial_id)
        return writer

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.logdir is not None:
            self.writer(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self.logdir is None:
            return
        writer = self.writer(trial)
        step = result.get("training_iteration", iteration)
        if trial.trial_id in self.starting:
            from tensorboardX.proto.event_pb2 import Event, SessionLog

            self.starting.discard(trial.trial_id)
            restart = SessionLog(status=SessionLog.START)
            writer.file_writer.add_event(Event(step=step, wall_time=time.time(), session_log=restart))
        for key, value in result.items():
            if key not in RAY_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(key, value, step)
        writer.flush()  # a TensorBoard already open shows the epoch at its next reload

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.starting.add(trial.trial_id)  # it fails, and goes on from its last checkpoint

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.close(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.close(trial, failed=True)

    def close(self, trial: Any, failed: bool) -> None:
        writer = self.writers.pop(trial.trial_id, None)
        if writer is not None:
            writer.file_writer.add_summary(session_end(failed))
            writer.close()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for writer in self.writers.values():  # trials an interruption cut off: what they wrote stays
            writer.close()
        self.writers.clear()


def hparams_metrics(header: dict[str, Any]) -> list[str]:
    """The HParams table's metrics in the order it shows them (it ticks the first five): the
    searched one, those the report's table shows, then the others."""
    return list(dict.fromkeys([header["metric"], *shown_metrics(header), *header["metrics"]]))


def searched_metric(folder: Path) -> str | None:
    """The metric the search in `folder` optimised, from the state it wrote before its first trial."""
    from tune_lab.paths import STATE_FILE
    from tune_lab.results import read_json

    return ((read_json(folder / STATE_FILE) or {}).get("search") or {}).get("metric")


def has_event_files(logdir: Path) -> bool:
    return any(logdir.glob("*/events.out.tfevents.*"))


def serve(target: str, storage: str | None, port: int, host: str = "127.0.0.1") -> None:
    """Become a TensorBoard on `host`:`port` showing the search `target` (a name or a folder).

    Bad input (no such search, no event files, a port in use) raises a UsageError.
    """
    import importlib.util

    from tune_lab import paths
    from tune_lab.usage import UsageError, check_port_free

    root = paths.results_root(storage)
    candidates = [Path(target), Path(root) / target]
    folder = next((f for f in candidates if f.is_dir()), None)
    if folder is None:
        raise UsageError(f"{target}: no search there (looked for the folder {candidates[0]} and {candidates[1]})")
    logdir = folder.resolve() / FOLDER
    if not has_event_files(logdir):
        raise UsageError(f"{target}: no TensorBoard event files in {logdir} (a search writes them from its first "
                         f"epoch on; searches run before tune-lab wrote them have none)")
    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError("tensorboard is not installed in this environment: pip install tensorboard")
    check_port_free(host, port)
    runs = sum(1 for _ in logdir.glob(f"*/{TRIAL_FILE}"))
    url, metric = f"http://{host}:{port}", searched_metric(folder)
    print(f"TensorBoard for {folder.name} ({runs} trials): {url}  (Ctrl-C stops it)")
    if metric:  # its scalars group sorts anywhere among the others; smoothing (default 0.6) blurs a few epochs
        print(f"  {metric} per epoch, unsmoothed: {url}/#scalars&tagFilter={metric}&_smoothingWeight=0")
    print(f"  parameters and metrics of every trial: {url}/#hparams", flush=True)
    # The pure-Python loader (not the Rust data server, a second process): it drops the points
    # of an epoch a resumed trial reported again.
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host,
               "--port", str(port), "--load_fast", "false"]
    os.execve(sys.executable, command, os.environ.copy())  # become TensorBoard: signals reach it directly
