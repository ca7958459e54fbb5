"""Where results and the embedded MLflow store live (design.md, "Where things go")."""
from __future__ import annotations

import os
from pathlib import Path

from labspec.files import is_remote

DEFAULT_RESULTS = "tune-lab-results"
# In a search's folder:
STATE_FILE = "search.json"  # what `tune-lab resume` needs, written before the first trial starts
# The rung scheduler's decisions and its paused / promoted / stopped events (JSON; tune_lab.schedulers). Not
# named *.json: on resume Ray copies every *.json / *.pkl of the folder into its staging folder and from then
# on copies them back after each step, which would put the copy from before the kill back over it.
SCHEDULER_STATE = "rungs.state"
# In a `tune-lab reproduce` folder: the plan and options it started with, MLflow ids, wall times.
REPRODUCE_RUN = "reproduce.json"


def results_root(explicit: str | None = None) -> str:
    """--storage, else $TUNE_LAB_HOME, else ./tune-lab-results; local paths made absolute.

    Ray changes each trial's working directory, so a relative path would land in the wrong
    place; URIs (s3://, gs://, ...) pass through untouched.
    """
    chosen = explicit or os.environ.get("TUNE_LAB_HOME") or DEFAULT_RESULTS
    if is_remote(chosen):
        return chosen
    return str(Path(chosen).expanduser().resolve())


def usable_root(root: str) -> str:
    """`root` if a results folder can be made there, else one line saying why: before anything starts.

    Checked by making it and taking back what was made (a search that fails later, on its data say,
    writes nothing): permissions alone do not tell (root may write anywhere, but not in /proc).
    """
    if is_remote(root):
        return root  # an object store: Ray's filesystem layer says what it can write
    path = Path(root)
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as exc:
        from tune_lab.usage import UsageError

        raise UsageError(f"--storage {root}: cannot make or write the results folder there "
                         f"({exc.strerror or exc}); give a folder you can write") from None
    finally:
        for folder in made:  # deepest first
            if folder.is_dir():
                folder.rmdir()
    return root


def tracking_uri(explicit: str | None, root: str, make: bool = True) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else an SQLite store in the results root (the
    root made unless `make` is False)."""
    chosen = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if chosen:
        return chosen
    if is_remote(root):
        from tune_lab.usage import UsageError

        raise UsageError(f"--storage {root} is remote: also give --tracking-uri (an MLflow server all nodes reach)")
    if make:
        Path(root).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(root) / 'mlflow.db'}"


def experiment_dir(root: str, experiment: str) -> str:
    return f"{root.rstrip('/')}/{experiment}"


def artifact_root(uri: str) -> str | None:
    """Where an embedded SQLite store keeps artifacts: beside its database file.

    Left to MLflow, it would be ./mlruns in whatever directory the driver runs from. A
    tracking server chooses its own (None).
    """
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts")
    return None
