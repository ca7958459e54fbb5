"""Running a plan: its sections one after another in one Ray session, into one folder, resumable.

Each section runs as an ordinary search (`run_search`) whose results folder sits inside the
reproduce folder. A rerun of the same command finds the unfinished reproduce, skips the sections
that finished, resumes an interrupted one from its trials' checkpoints (as `tune-lab resume` does,
through the same `runner.resume_search`) and runs the rest; then the combined report is written.
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from reports.record import Status
from labspec.files import is_remote

from tune_lab.options import SearchOptions
from tune_lab.paths import REPRODUCE_RUN
from tune_lab.reproduce.plan import Plan
from tune_lab.reproduce.report import write_combined_report
from tune_lab.results import complete_summary, read_json, write_json
from tune_lab.usage import UsageError

# SearchOptions a reproduce passes on to every section (the others are the plan's, or one per section).
PASSED_ON = ("data_dir", "max_concurrent", "cpus_per_trial", "gpus_per_trial", "address", "tracking_uri", "seed",
             "max_failures")


def default_experiment(plan: Plan, root: str) -> tuple[str, bool]:
    """(name, whether it continues): the newest unfinished reproduce of this plan at this size under `root`,
    so that rerunning a killed command as it was typed continues it; else a new reproduce-LAB[-quick]-TIME."""
    prefix = f"reproduce-{plan.name}{'-quick' if plan.quick else ''}-"
    for folder in sorted(Path(root).glob(prefix + "*"), reverse=True):  # names end in a sortable time
        run = read_json(folder / REPRODUCE_RUN)
        if run and run.get("plan_name") == plan.name and bool(run.get("quick")) == plan.quick and not run.get("complete"):
            return folder.name, True
    return prefix + time.strftime("%Y%m%d-%H%M%S"), False


def section_state(folder: Path) -> str:
    """'done' (summary.json says complete), 'resumed' (an interrupted search: its state is there) or 'running'."""
    from tune_lab.paths import STATE_FILE

    if complete_summary(folder):
        return "done"
    return "resumed" if (folder / STATE_FILE).is_file() else "running"


def _started_with(plan: Plan, folder: Path, run: dict[str, Any] | None) -> None:
    """A rerun must be the same plan at the same size: its sections' folders hold that plan's searches."""
    if run is None:
        return
    if run.get("plan_name") != plan.name or bool(run.get("quick")) != plan.quick:
        was = f"{run.get('plan_name')}{' --quick' if run.get('quick') else ''}"
        raise UsageError(f"reproduce: {folder} holds `reproduce {was}`; rerun that command to continue it, "
                         f"or give another --experiment")


def run_plan(plan: Plan, opts: SearchOptions, repeats: int | None = None) -> int:
    """Run (or continue) every section of `plan` in one Ray session, then write the combined report.

    `opts` holds what the command line says for every section (`PASSED_ON`), `storage` (the results
    root) and `experiment` (the reproduce folder's name). Returns the exit code.
    """
    from tune_lab import paths
    from tune_lab.runner import resume_search, run_search, start_ray

    root = paths.results_root(opts.storage)
    if is_remote(root):
        raise UsageError(f"reproduce: --storage {root}: a reproduce writes its folder on a local disk (or a shared mount); "
                         f"give a local path")
    experiment, continued = (opts.experiment, False) if opts.experiment else default_experiment(plan, root)
    folder = Path(root) / experiment
    if continued:
        print(f"tune-lab: continuing the unfinished {folder} (give --experiment NAME to start another)", flush=True)
    run = read_json(folder / REPRODUCE_RUN)
    _started_with(plan, folder, run)
    folder.mkdir(parents=True, exist_ok=True)
    if run is None:
        uri = paths.tracking_uri(opts.tracking_uri, root)  # the results root's store, where `tune-lab ui` looks
        run = {"plan": str(plan.path), "plan_name": plan.name, "title": plan.title, "quick": plan.quick,
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "repeats": repeats,
               "options": {k: getattr(opts, k) for k in PASSED_ON}, "mlflow": {"tracking_uri": uri}, "sections": {}}
        write_json(run, str(folder), REPRODUCE_RUN)
    uri = run["mlflow"]["tracking_uri"]
    parent = _reproduce_run(run, plan, folder)
    write_json(run, str(folder), REPRODUCE_RUN)
    print(f"tune-lab: reproduce {plan.name}{' --quick' if plan.quick else ''}: {len(plan.sections)} sections; results in {folder} "
          f"(if it is interrupted, the same command continues it)", flush=True)

    started_ray, ray_up = False, False
    code = 0
    try:
        for i, section in enumerate(plan.sections, start=1):
            where = folder / section.key
            if section.skipped:
                print(f"[{i}/{len(plan.sections)}] {section.key}: skipped (--quick: {section.skipped})", flush=True)
                continue
            state = section_state(where)
            print(f"[{i}/{len(plan.sections)}] {section.key}: {state} ({section.lab} --search {section.search.name})", flush=True)
            if state == "done":
                continue
            if not ray_up:  # once, when a section first needs it: every run_search finds it running
                started_ray, ray_up = start_ray(opts.address), True
            began = time.monotonic()
            if state == "resumed":
                summary = resume_search(where, opts.address)
            else:
                if where.exists():  # killed before its search started (no state): nothing to keep
                    shutil.rmtree(where)
                search = section.search if repeats is None else dataclasses.replace(section.search, repeats=repeats)
                section_opts = SearchOptions(**{k: getattr(opts, k) for k in PASSED_ON}, dataset=section.dataset,
                                             subset=section.subset, num_samples=section.num_samples,
                                             storage=str(folder), experiment=section.key)
                section_opts.tracking_uri = uri
                summary = run_search(search, section_opts, tags=_section_tags(run, plan, experiment))
            record = run["sections"].setdefault(section.key, {"wall_s": 0.0})
            record["wall_s"] = round(record["wall_s"] + time.monotonic() - began, 1)
            record["parent_run_id"] = (summary.get("mlflow") or {}).get("parent_run_id")
            write_json(run, str(folder), REPRODUCE_RUN)
            if parent is not None and record["parent_run_id"]:
                parent.client.set_tag(parent.run_id, f"tune_lab.section.{section.key}", record["parent_run_id"])
            if summary.get("interrupted"):
                print(f"\ntune-lab: reproduce interrupted in section {section.key}; nothing is lost. The same command "
                      f"continues it (or name it: --experiment {experiment})", file=sys.stderr)
                return 130
            if any(t["status"] == Status.ERRORED for t in summary["trials"]):
                code = 1
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    report_dir = write_combined_report(plan, folder)
    if parent is not None:
        parent.client.log_artifacts(parent.run_id, str(report_dir), "report")
        parent.end(failed=code != 0)
    run["complete"] = True  # a rerun without --experiment starts a new reproduce
    write_json(run, str(folder), REPRODUCE_RUN)
    print(f"\nReport: {report_dir / 'report.html'}  ({report_dir / 'report.md'})")
    return code


def _section_tags(run: dict[str, Any], plan: Plan, experiment: str) -> dict[str, str]:
    """Tags of a section's MLflow parent run: the reproduce it belongs to."""
    return {"tune_lab.reproduce": experiment, "tune_lab.reproduce_plan": plan.name,
            "tune_lab.reproduce_run_id": (run.get("mlflow") or {}).get("run_id") or ""}


def _reproduce_run(run: dict[str, Any], plan: Plan, folder: Path) -> Any:
    """The reproduce's own MLflow run (experiment "reproduce"), created once and found again on a rerun.

    MLflow nests runs only within one experiment, and each search's parent run lives in its lab's
    experiment: the sections are linked to it by tags (tune_lab.section.KEY on it,
    tune_lab.reproduce_run_id on theirs), not nested under it.
    """
    from tune_lab import paths
    from tune_lab.tracking import SearchRun, Store

    uri = run["mlflow"]["tracking_uri"]
    if run["mlflow"].get("run_id"):
        return SearchRun.attach(uri, run["mlflow"]["run_id"])
    parent = Store(uri, "reproduce", paths.artifact_root(uri)).start_run(folder.name, tags={
        "tune_lab.reproduce_plan": plan.name, "tune_lab.quick": str(plan.quick).lower(),
        "tune_lab.results": str(folder), "mlflow.note.content": plan.question,
    })
    run["mlflow"]["run_id"] = parent.run_id
    return parent
