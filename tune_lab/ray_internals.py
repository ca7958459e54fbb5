"""Every use of a Ray internal in tune-lab, in one place: what to read again before a Ray upgrade.

Any of these may change in a minor Ray release, so tune-lab runs only on the Ray it was tested with
(TESTED_RAY, pinned in pyproject.toml too; `require_tested_ray` refuses another at start-up).
For each: what it is, why tune-lab needs it, and the public API that would replace it.

- `set_callbacks`: `Tuner._local_tuner.get_run_config().callbacks`. `Tuner.restore` brings back the
  callbacks the interrupted driver pickled, with their state; a resumed search needs fresh ones
  (and, in a notebook, its own progress reporter). Public: a `callbacks` (or `run_config`) argument
  of `Tuner.restore`.
- `STATE_FILES`, `driver_staging_folder`: the files in which Ray's controller, searchers and
  callbacks save the experiment state, and `trial.storage.experiment_driver_staging_path`, where the
  driver saves them before a thread copies them, truncating first, into the results folder
  (tune_lab/driver_state.py keeps a whole copy). Public: none; Ray saving atomically would do.
- `gpu_share`: `Trial.placement_group_factory.required_resources`, the GPU (or fraction) Ray holds
  for a trial (tune_lab/placement.py). Public: the trial reporting
  `ray.get_runtime_context().get_assigned_resources()` with its results.
- `set_trial_status`: `Trial.set_status`, by promotion ASHA on a resumed search: Ray re-adds every
  unfinished trial as PENDING and does not restore a scheduler, so a trial that waited at a rung
  goes back to PAUSED (or TERMINATED if stopped there). Public: Tune saving and restoring a
  scheduler's state with the experiment (`TrialScheduler.save` / `restore` exist, unused on resume).
- `search_algorithm`, `stop_trial`: the controller's `search_alg` and `stop_trial` as promotion ASHA
  sees them; Ray lets schedulers use both (`TuneController._wrapped`) and its HyperBand stops
  paused trials so, but `TrialScheduler` documents neither. Public: a documented controller API.
- `hold_place`: `BasicVariantGenerator._live_trials` and ConcurrencyLimiter's `live_trials` /
  `num_unfinished_live_trials`, what their `max_concurrent` counts: a trial waiting at a rung must
  not hold a place, or the search stalls. Public: the `Searcher.on_pause` / `on_unpause` hooks
  exist (Ray's BOHB uses them), but neither the generator nor the limiter acts on them.
- `trial_number`: `Trial.experiment_tag`'s leading number, which Ray's generators count up as they make
  trials and save with the search: the order the scheduler judges trials in, the same again for a trial
  made again after a kill. Public: a documented trial index.
- `optuna_study`, `optuna_trial`: `OptunaSearch._ot_study` and `_ot_trials`, the study and the asked
  Optuna trials behind Ray's searcher; `OrderedOptunaSearch` tells the study itself, in trial order.
  Public: an OptunaSearch hook to tell a trial's outcome.
- `raylet_exit`: `ray._private.worker._global_node.all_processes["raylet"]`, the raylet process of a Ray
  this driver started, and its logs folder: a node that died under a search is told apart from trials
  that failed (its trials' actors only say "unavailable"). Public: `ray.nodes()` says so too, but
  only after GCS's health checks give up on the node (~15-30 s later).
- `drop_state_dumps`: `ray._private.worker.print_worker_logs`, which prints the lines Ray forwards
  to the driver; when a raylet dies, the tail of its log arrives there, ~40 `[state-dump]` lines,
  which tune-lab's one line about the dead node replaces. Public: a filter for forwarded logs.
- `quiet_default_auth_notice`: the logger of `ray._private.authentication.authentication_token_setup`,
  raised to ERROR while a driver starts its own local Ray. Ray then turns on token authentication
  as it always does, without its WARNING line saying so: that line came before the one line of any
  error the search then ends with (a dataset that cannot be read is found while Ray starts, see
  tune_lab/runner.py), and setting RAY_AUTH_MODE=token instead, which Ray accepts silently, is read
  into Ray's cached config at import, too late. Public: a documented way to acknowledge the default.
- Outside this module, one use (trial processes import trainables, which imports nothing of
  tune_lab): `trainables/generative.progress_dir` takes a trial's folder in the results from
  `tune.get_context().get_storage()` (a DeveloperAPI) and its `trial_fs_path`,
  `storage_filesystem` and `trial_working_directory`, because `get_trial_dir()` names a reused
  actor's unsynced working directory. Public: `get_trial_dir()` naming the trial's results folder.
- `bookkeeping_keys`: `ray.tune.result.AUTO_RESULT_KEYS`, the keys Tune adds to every result (pid,
  timestamp, time_total_s ...), which the TensorBoard files leave out (tune_lab/tensorboard.py).
  Public: none; a documented list of them would do.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Iterator

TESTED_RAY = ">=2.60,<2.61"
STATE_FILES = ("experiment_state-*.json", "basic-variant-state-*.json", "search_gen_state-*.json",
               "searcher-state-*.pkl", "callback-states-*.pkl")


def ray_version_problem(found: str | None) -> str | None:
    """The one line that refuses Ray `found` (None: not installed), or None for a tested Ray."""
    from packaging.specifiers import SpecifierSet

    if found is None or not SpecifierSet(TESTED_RAY).contains(found, prereleases=True):
        return f"tune-lab needs Ray {TESTED_RAY} (tested); found {found or 'none'}: pip install 'ray[default,tune]==2.60.0'"
    return None


def require_tested_ray() -> None:
    """Before Ray is imported (its version read from the installed package): exit 2 on another Ray."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        problem = ray_version_problem(version("ray"))
    except PackageNotFoundError:
        problem = ray_version_problem(None)
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(2)


def set_callbacks(tuner: Any, callbacks: list[Any], progress: Any = None) -> None:
    config = tuner._local_tuner.get_run_config()
    config.callbacks = callbacks
    if progress is not None:  # a notebook's one-line progress (tune_lab.progress) in place of the table
        config.progress_reporter = progress


def driver_staging_folder(trial: Any) -> str:
    return trial.storage.experiment_driver_staging_path


def gpu_share(trial: Any) -> float:
    factory = getattr(trial, "placement_group_factory", None)
    return float(factory.required_resources.get("GPU", 0.0)) if factory is not None else 0.0


def set_trial_status(trial: Any, status: str) -> None:
    trial.set_status(status)


def search_algorithm(tune_controller: Any) -> Any:
    return getattr(tune_controller, "search_alg", None)


def stop_trial(tune_controller: Any, trial: Any) -> None:
    tune_controller.stop_trial(trial)


def raylet_exit() -> tuple[int, str] | None:
    """The exit code of the raylet of the Ray this driver started, and its log file, once it has exited."""
    import ray._private.worker as worker

    node = getattr(worker, "_global_node", None)
    processes = (node.all_processes.get("raylet") or []) if node is not None else []
    if not processes:
        return None
    code = processes[0].process.poll()
    return None if code is None else (code, f"{node.get_logs_dir_path()}/raylet.out")


def drop_state_dumps() -> None:
    """From now on in this driver (Ray publishes a dead raylet's log tail whenever its watcher notices, which
    can be after the search's trials have ended)."""
    import ray._private.worker as worker

    printing = worker.print_worker_logs
    if getattr(printing, "drops_state_dumps", False):
        return

    def filtered(data: dict, print_file: Any, ignore_prefix: bool = False) -> None:
        if data.get("pid") == "raylet":
            data = {**data, "lines": [line for line in data.get("lines", []) if "[state-dump]" not in line]}
            if not data["lines"]:
                return
        printing(data, print_file, ignore_prefix)

    filtered.drops_state_dumps = True  # type: ignore[attr-defined]
    worker.print_worker_logs = filtered


def trial_number(trial: Any) -> int | None:
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) if head.isdigit() else None


def optuna_study(searcher: Any) -> Any:
    return searcher._ot_study


def optuna_trial(searcher: Any, trial_id: str) -> Any:
    return searcher._ot_trials[trial_id]


def hold_place(searcher: Any, trial_id: str, hold: bool) -> bool:
    """Count `trial_id` in a generator's or limiter's `max_concurrent`, or not; whether that changed."""
    limiter = hasattr(searcher, "num_unfinished_live_trials")
    live = searcher.live_trials if limiter else searcher._live_trials
    if (trial_id in live) == hold:
        return False
    (live.add if hold else live.remove)(trial_id)
    if limiter:
        searcher.num_unfinished_live_trials += 1 if hold else -1
    return True


def quiet_default_auth_notice() -> contextlib.AbstractContextManager[None]:
    return quieted("ray._private.authentication.authentication_token_setup")


@contextlib.contextmanager
def quieted(logger: str) -> Iterator[None]:
    """Ray's logger `logger` says only errors within the block."""
    said = logging.getLogger(logger)
    level = said.level
    said.setLevel(logging.ERROR)
    try:
        yield
    finally:
        said.setLevel(level)


def bookkeeping_keys() -> frozenset[str]:
    from ray.tune.result import AUTO_RESULT_KEYS

    return frozenset(AUTO_RESULT_KEYS)
