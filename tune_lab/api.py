"""tune-lab from Python: the command line's searches, as functions that return a `Result`.

    import tune_lab
    result = tune_lab.search("mlp", "optimizer", subset=2000, set={"epochs": 3})
    result.table          # one row per trial, a typed column per hyperparameter and metric
    tune_lab.load(result.experiment).table   # the same, later, from its folder or from MLflow

The same engine as `tune-lab LAB --search NAME`: the same checks before anything starts, the same
Ray Tune search, MLflow runs and report. Bad input raises `TuneLabError` (a ValueError) with the
command line's one-line message; nothing here exits the process. Ray is started once, by the
first search of a session, and reused by the next ones (the command line stops it after each).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from labspec.errors import TuneLabError
from tune_lab.options import SearchOptions, checked_repeats
from tune_lab.result import Result

OPTION_NAMES = tuple(f.name for f in dataclasses.fields(SearchOptions))


def labs() -> dict[str, str]:
    """Every registered lab (the shipped ones, and any of yours already imported): name -> description."""
    from labspec.registry import LABS

    return {name: LABS[name].description for name in sorted(LABS)}


def searches(lab: str) -> dict[str, str]:
    """The search files shipped for `lab`: name -> description."""
    from labspec.registry import get_lab
    from tune_lab.spaces import available_searches

    get_lab(lab)  # an unknown lab: registry's one line (UnknownLab, a TuneLabError)
    return available_searches(lab)  # a lab of your own has none shipped: its searches are your files


def checked_search(lab: str, search: str, overrides: Mapping[str, Any], repeats: int | str | None,
                   num_samples: int | None) -> Any:
    """The search file read and checked with `overrides` (--set) and `repeats`: one line on any problem.

    Shared by the command line and `search`, so both refuse the same input the same way.
    """
    from labspec.registry import get_lab
    from tune_lab.spaces import MAX_NUM_SAMPLES, load_search, overridden_again
    from tune_lab.usage import UsageError

    get_lab(lab)  # an unknown lab: registry's one line (UnknownLab, a TuneLabError)
    repeats = checked_repeats(repeats)
    checked = load_search(search, lab, dict(overrides))
    shadowed = overridden_again(checked, dict(overrides))
    if shadowed:
        print(f"tune-lab: warning: {shadowed}", file=sys.stderr, flush=True)
    if repeats is not None:
        checked = dataclasses.replace(checked, repeats=repeats)
    if num_samples is not None and num_samples > MAX_NUM_SAMPLES:
        raise UsageError(f"--num-samples {num_samples}: at most {MAX_NUM_SAMPLES}")
    return checked


def search(lab: str, search: str, *, set: Mapping[str, Any] | None = None, repeats: int | None = None,
           labs: Sequence[str] = (), progress: str = "auto", **options: Any) -> Result:
    """Run a search of `lab` to its end and return its `Result`.

    `search`: a shipped search's name (`searches(lab)`) or the path of your own YAML file. `set`:
    the command line's --set, as a dict. `labs`: --labs, files or modules of your own labs to
    import first (a lab defined with `tune_lab.lab` in this session needs none). `options`: every other option of the command line under
    its Python name (dataset, data_dir, subset, num_samples, max_concurrent, cpus_per_trial,
    gpus_per_trial, address, storage, tracking_uri, experiment, seed, scheduler, deterministic,
    max_failures, keep_checkpoints). `progress`: "auto" (one updating line in a notebook, Ray's
    table elsewhere), "notebook" or "table".

    Interrupted (Jupyter's stop button, Ctrl-C), the trials stop and the Result says
    `interrupted`; `resume(result.folder)` continues the search.
    """
    from tune_lab import user_labs
    from tune_lab.runner import run_search

    for text in [labs] if isinstance(labs, str) else labs:
        user_labs.load(text, "labs=")
    opts = _options(options)
    checked = checked_search(lab, search, set or {}, repeats, opts.num_samples)
    return _run(lambda reporter: run_search(checked, opts, progress=reporter), checked.metric, checked.mode, progress,
                opts.address)


def resume(target: str, *, storage: str | None = None, address: str | None = None, progress: str = "auto") -> Result:
    """Continue an interrupted search (its experiment name under the results root, or its folder), as
    `tune-lab resume` does; a search that had finished is returned as it is."""
    from tune_lab import user_labs
    from tune_lab.runner import resume_search
    from tune_lab.results import complete_summary
    from tune_lab.plan import load_state

    folder = resumable_folder(target, storage)
    done = complete_summary(folder)
    if done is not None:
        return Result(done, str(folder))
    user_labs.ensure_lab_of(str(folder), storage, "resume")  # a lab of one's own, before its search is read
    checked, opts, _ = load_state(folder)
    return _run(lambda reporter: resume_search(folder, address, progress=reporter), checked.metric, checked.mode,
                progress, address or opts.address)  # the cluster the search used, as `tune-lab resume` joins it


def resumable_folder(target: str, storage: str | None) -> Path:
    """The folder of the search `target` names (a folder, or an experiment under the results root) that
    `resume` can continue: one whose search.json is there."""
    from tune_lab import paths
    from tune_lab.paths import STATE_FILE
    from tune_lab.usage import UsageError

    root = paths.results_root(storage)
    folder = next((f for f in (Path(target), Path(root) / target) if (f / STATE_FILE).is_file()), None)
    if folder is None:
        raise UsageError(f"{target}: no interrupted search there (looked for {STATE_FILE} in {target} and {Path(root) / target})")
    return folder


def load(target: str, *, storage: str | None = None, tracking_uri: str | None = None) -> Result:
    """A finished search: from MLflow where its runs are, else from its results folder's summary.json."""
    from reports.source import load_record
    from tune_lab import paths, user_labs

    user_labs.ensure_lab_of(target, storage, "load")  # its hyperparameters' types type the table's columns
    root = paths.results_root(storage)
    record = load_record(target, root, tracking_uri)
    folder = record.get("storage") or str(Path(root) / record["experiment"])
    if Path(target).is_dir() and (Path(target) / "summary.json").is_file():
        folder = str(Path(target).resolve())
    return Result(record, folder)


def _options(options: dict[str, Any]) -> SearchOptions:
    """The keyword options as SearchOptions, each checked as its command-line flag would check it."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TuneLabError(f"unknown option {unknown[0]!r}; allowed: set, repeats, progress, {', '.join(OPTION_NAMES)}")
    values = {}
    for field in dataclasses.fields(SearchOptions):
        if field.name not in options or options[field.name] is None:
            continue
        value, meta = options[field.name], field.metadata
        if meta.get("action") == "store_true":
            if not isinstance(value, bool):
                raise TuneLabError(f"{field.name}={value!r}: expected True or False")
        elif "type" in meta:
            try:
                value = meta["type"](str(value))
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise TuneLabError(f"{field.name}={value!r}: {exc}") from None
        elif not isinstance(value, str):
            raise TuneLabError(f"{field.name}={value!r}: expected a string")
        if meta.get("choices") and value not in meta["choices"]:
            raise TuneLabError(f"{field.name}={value!r}: expected one of {', '.join(meta['choices'])}")
        values[field.name] = value
    return SearchOptions(**values)


def _run(run: Any, metric: str, mode: str, progress: str, address: str | None) -> Result:
    """Start Ray once for the session, run, and wrap the summary."""
    from tune_lab.progress import NotebookProgress, in_notebook
    from tune_lab.ray_internals import quieted
    from tune_lab.runner import start_ray

    if progress not in ("auto", "notebook", "table"):
        raise TuneLabError(f"progress={progress!r}: expected auto, notebook or table")
    notebook = progress == "notebook" or (progress == "auto" and in_notebook())
    with contextlib.ExitStack() as quiet:
        if notebook:  # the notebook has its progress line: no advice to install ipywidgets for Ray's and tqdm's
            quiet.enter_context(quieted("ray.widgets.util"))
            quiet.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message="IProgress not found")
        start_ray(address)  # kept running after the search: the next search of this session reuses it
        summary = run(NotebookProgress(metric, mode) if notebook else None)
    return Result(summary, summary["storage"], interrupted=bool(summary.get("interrupted")))
