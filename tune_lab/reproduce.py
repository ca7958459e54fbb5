"""`tune-lab reproduce LAB`: a lab's plan -> its searches, in one Ray session and one results folder ->
one combined report.

A plan (search_spaces/reproduce/LAB.yaml, or the user's own file) lists the searches that make up a
lab's report, in order, each with the question it answers and a `quick:` block that shrinks it for
`--quick`. Each section runs as an ordinary search (`run_search`) whose results folder sits inside
the reproduce folder; a rerun of the same command skips the sections that finished, resumes an
interrupted one and runs the rest. Plans are read and checked before Ray or torch is imported.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import functools
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from trainables.registry import LABS, lab_names
from tune_lab.options import SearchOptions
from tune_lab.results import complete_summary, read_json, write_json
from tune_lab.spaces import SEARCH_DIR, Search, SearchSpaceError, read_yaml, validated, load_search
from tune_lab.usage import UsageError

PLAN_DIR = SEARCH_DIR / "reproduce"
RUN_FILE = "reproduce.json"  # in the reproduce folder: the plan and options it started with, MLflow ids, wall times
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
# SearchOptions a reproduce passes on to every section (the others are the plan's, or one per section).
PASSED_ON = ("data_dir", "max_concurrent", "cpus_per_trial", "gpus_per_trial", "address", "tracking_uri", "seed",
             "max_failures")


# --------------------------------------------------------------------------- plans
def plan_names() -> list[str]:
    return sorted(p.stem for p in PLAN_DIR.glob("*.yaml"))


def plan_path(name_or_path: str) -> Path:
    """A shipped plan's name (lab1 ... lab5) or the path of the user's own plan file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate.resolve()
    path = PLAN_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UsageError(f"reproduce: unknown lab {name_or_path!r}; known: {', '.join(plan_names())} (or give a plan's .yaml path)")
    return path


@functools.cache
def _models() -> SimpleNamespace:
    """A plan file's shape (pydantic, strict, no unknown keys); each level is checked on its own, so a
    refusal names the file, the key path and what the key allows."""
    from pydantic import BaseModel, ConfigDict, Field

    strict = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    def text() -> Any:
        return Field(min_length=1, description="a non-empty line of text")

    def overrides() -> Any:
        return Field(default_factory=dict, description="a mapping of parameter: value, as --set takes them")

    def samples() -> Any:
        return Field(None, ge=1, description="an integer >= 1 (training samples kept, as --subset)")

    def trials() -> Any:
        return Field(None, ge=1, description="an integer >= 1 (trials of a random / optuna search)")

    class PlanFile(BaseModel):
        model_config = strict
        title: str = text()
        question: str = text()
        sections: list[dict] = Field(min_length=1, description="a non-empty list of sections, each a mapping")

    class SectionFile(BaseModel):
        model_config = strict
        key: str = Field(pattern=KEY_PATTERN, description="a folder name: lower-case letters, digits, - and _")
        title: str = text()
        question: str = text()
        lab: str = Field(description="a lab: " + ", ".join(lab_names()))
        search: str = Field(min_length=1, description="a search of the lab (see `tune-lab list`) or a .yaml path")
        dataset: Optional[str] = Field(None, description="one of the lab's datasets")
        set: dict = overrides()
        subset: Optional[int] = samples()
        num_samples: Optional[int] = trials()
        quick: dict = Field(default_factory=dict, description="a mapping of subset, set, num_samples, skip")

    class QuickFile(BaseModel):
        model_config = strict
        subset: Optional[int] = samples()
        set: dict = overrides()
        num_samples: Optional[int] = trials()
        skip: Optional[str] = Field(None, min_length=1, description="why --quick leaves this section out (text)")

    return SimpleNamespace(PlanFile=PlanFile, SectionFile=SectionFile, QuickFile=QuickFile)


@dataclass
class Section:
    key: str
    title: str
    question: str
    search: Search  # loaded with the section's (and, with --quick, its quick block's) overrides
    dataset: str | None
    subset: int | None
    num_samples: int | None
    skipped: str | None = None  # why --quick leaves it out

    @property
    def lab(self) -> str:
        return self.search.lab


@dataclass
class Plan:
    path: Path
    name: str
    title: str
    question: str
    quick: bool
    sections: list[Section]


def _checked(path: Path, where: str, model: Any, value: Any) -> Any:
    """`value` checked by `model`; a missing key is named as such (pydantic would show the whole mapping)."""
    if isinstance(value, dict):
        for name, field in model.model_fields.items():
            if field.is_required() and name not in value:
                raise SearchSpaceError(f"{path}: {where + ': ' if where else ''}missing key {name!r} ({field.description})")
    return validated(path, where, model, value)


def load_plan(name_or_path: str, quick: bool = False) -> Plan:
    """Read and check a plan; every section's search is loaded (with its overrides) as `tune-lab LAB --search` would."""
    path = plan_path(name_or_path)
    models = _models()
    doc = _checked(path, "", models.PlanFile, read_yaml(path))
    sections, keys = [], set()
    for i, raw in enumerate(doc.sections):
        where = f"sections[{i}]"
        s = _checked(path, where, models.SectionFile, raw)
        q = _checked(path, f"{where}.quick", models.QuickFile, s.quick)
        if s.key in keys:
            raise SearchSpaceError(f"{path}: {where}.key: {s.key!r} is used twice; each section needs its own folder name")
        keys.add(s.key)
        if s.lab not in LABS:
            raise SearchSpaceError(f"{path}: {where}.lab: unknown lab {s.lab!r}; allowed: {', '.join(lab_names())}")
        if s.dataset is not None and s.dataset not in LABS[s.lab].datasets:
            raise SearchSpaceError(f"{path}: {where}.dataset: {s.dataset!r} is not allowed for lab {s.lab}; "
                                   f"expected one of {', '.join(LABS[s.lab].datasets)}")
        overrides = {**s.set, **q.set} if quick else dict(s.set)
        try:
            search = load_search(s.search, s.lab, overrides)
        except SearchSpaceError as exc:
            # a set / quick.set value is refused by load_search as --set KEY: said here as the plan's key
            raise SearchSpaceError(f"{path}: {where} ({s.key}): {str(exc).replace('--set ', 'set.')}") from None
        sections.append(Section(
            key=s.key, title=s.title.strip(), question=s.question.strip(), search=search, dataset=s.dataset,
            subset=(q.subset or s.subset) if quick else s.subset,
            num_samples=(q.num_samples or s.num_samples) if quick else s.num_samples,
            skipped=q.skip if quick else None,
        ))
    return Plan(path=path, name=path.stem, title=doc.title.strip(), question=doc.question.strip(), quick=quick,
                sections=sections)


# --------------------------------------------------------------------------- the estimate (--dry-run)
@dataclass(frozen=True)
class Cost:
    sample_s: float  # seconds per training sample per epoch, one torch thread
    eval_s: float  # seconds of each epoch's evaluation (val and test splits, generated samples)
    quality_scaled: bool = False  # eval_s is for quality_samples=2000 and scales with it


# Measured on this machine (Intel Xeon @ 2.80GHz, 2 cores shared with other work, load 2-4) on
# 2026-12-02: one epoch of each lab's Trainer on 1,024 real training samples (2,048 for vae / cgan,
# second epoch) with one torch thread, as a 1-CPU trial runs, timing train_epoch and evaluate
# apart. The CIFAR stem was not timed: ~16x the ImageNet stem's compute (README, lab 2). seq2seq is
# per training pair at max_length 10. mlp: docs/benchmarks.md's whole epoch on a quiet machine (2.2-2.7 s for
# 55,000 images, batch 256); `reproduce lab1 --quick` at load 6 took 4.2 s per trial-epoch (2026-12-02).
# linreg: 3 epochs of its 1,000 points at batch 10 (load 6, 2026-12-02). Rough (the machine's load moves them
# by 2x): for planning.
COSTS: dict[str, Cost] = {
    "linreg": Cost(1.5e-5, 0.001),
    "mlp": Cost(4.5e-5, 0.1),
    "mlp/softmax": Cost(4.3e-6, 0.02),
    "resnet/lenet": Cost(1.6e-4, 1.3),
    "resnet/resnet18-imagenet": Cost(5.0e-3, 16.5),
    "resnet/resnet18-cifar": Cost(8.0e-2, 264.0),
    "seq2seq": Cost(1.9e-3, 2.3),
    "ae": Cost(6.2e-4, 2.9),
    "vae": Cost(1.0e-3, 7.0, quality_scaled=True),
    "wgan": Cost(2.9e-3, 3.8, quality_scaled=True),
    "cgan": Cost(6.0e-4, 3.0, quality_scaled=True),
}
# Training samples of each dataset's full training split (after the 5,000 held out for validation);
# eng_fra: pairs kept at max_length 10 with the English prefixes (README, lab 3), at 64 about 15% more.
TRAIN_SIZE = {"synthetic": 1_000, "mnist": 55_000, "fashion_mnist": 55_000, "digits": 1_617, "cifar10": 45_000, "eng_fra": 8_524}
# vae, wgan and cgan are judged by a reference classifier trained on the driver on a dataset's first use
# (3 epochs of a small CNN on the whole training split), then cached: trainables.quality.
JUDGED_LABS = ("vae", "wgan", "cgan")
REFERENCE_S = 120.0
SEARCH_OVERHEAD_S = 20.0  # data, Ray's trial start-up, MLflow, summary and report of one search
TRIAL_OVERHEAD_S = 1.0  # Ray's cost per trial (docs/benchmarks.md: 0.5-0.8 s)
ESTIMATE_NOTE = ("estimated from seconds per training sample-epoch and per epoch's evaluation measured on this "
                 "2-core CPU, one torch thread per trial (tune_lab/reproduce.py, COSTS), trials side by side as "
                 "the CPUs allow, plus ~20 s per search; ASHA searches (stops early) are upper bounds; rough: "
                 "the machine's load moves it by 2x")


def _cost(lab: str, config: dict[str, Any]) -> Cost:
    if lab == "mlp" and config.get("model") == "softmax":
        return COSTS["mlp/softmax"]
    if lab == "resnet":
        if config.get("model") == "lenet":
            return COSTS["resnet/lenet"]
        stem = "imagenet" if config.get("faithful") else config.get("stem", "cifar")
        return COSTS[f"resnet/resnet18-{stem}"]
    return COSTS.get(lab, Cost(1e-3, 5.0))


@dataclass
class Estimate:
    trials: int
    epochs: list[int]  # per trial
    seconds: float
    asha: bool

    @property
    def trial_epochs(self) -> int:
        return sum(self.epochs)


def estimate(section: Section, cpus: float, cpus_per_trial: float | None = None, max_concurrent: int | None = None,
             repeats: int | None = None) -> Estimate:
    """Trials, epochs and wall seconds of one section on `cpus` CPUs (no Ray, no torch)."""
    search = section.search
    configs = search.trial_configs()
    if search.algorithm != "grid":  # random / optuna: num_samples draws of the space
        configs = [{**configs[0], "epochs": search.max_epochs()}] * (section.num_samples or search.num_samples)
    else:
        configs = configs * (section.num_samples or search.num_samples)
    dataset = section.dataset or search.dataset or search.spec.default_dataset
    size = TRAIN_SIZE.get(dataset, 10_000)
    seeds = repeats or search.repeats
    per_trial = []
    for config in configs:
        cost = _cost(search.lab, config)
        samples = min(section.subset or size, size)
        if search.lab == "seq2seq" and int(config.get("max_length", 10)) > 10:
            samples = min(section.subset or int(size * 1.15), int(size * 1.15))
        evaluation = cost.eval_s * (config.get("quality_samples", 2000) / 2000 if cost.quality_scaled else 1)
        per_trial.append(int(config["epochs"]) * (samples * cost.sample_s + evaluation) * seeds + TRIAL_OVERHEAD_S)
    slots = max(1, int(cpus // (cpus_per_trial or 1))) if cpus_per_trial != 0 else len(configs)
    slots = max(1, min(slots, max_concurrent or slots, len(configs)))
    wall = max(sum(per_trial) / slots, max(per_trial, default=0.0)) + SEARCH_OVERHEAD_S
    scheduler = search.scheduler
    return Estimate(trials=len(configs), epochs=[int(c["epochs"]) for c in configs], seconds=wall,
                    asha=scheduler in ("asha", "promotion"))


def _reference_cached(dataset: str) -> bool:
    """Whether a reference classifier of `dataset` is in the cache (trainables.quality.reference_dir)."""
    base = os.environ.get("TUNE_LAB_CACHE")
    folder = (Path(base) / "reference" if base else Path("~/.cache/tune-lab/reference")).expanduser()
    return any(folder.glob(f"{dataset}-*.pt"))


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def dry_run(plan: Plan, cpus: float, cpus_per_trial: float | None = None, max_concurrent: int | None = None,
            repeats: int | None = None) -> str:
    """The plan as a table: per section its search, dataset, trials, epochs and estimated time, and the total."""
    from tabulate import tabulate

    rows, total, total_epochs, references = [], 0.0, 0, []
    for i, s in enumerate(plan.sections, start=1):
        dataset = s.dataset or s.search.dataset or s.search.spec.default_dataset
        if s.lab in JUDGED_LABS and not s.skipped and not _reference_cached(dataset) and dataset not in references:
            references.append(dataset)
            total += REFERENCE_S
        if s.subset:
            dataset += f" ({s.subset:,} samples)"
        if s.skipped:
            rows.append([i, s.key, s.lab, s.search.name, dataset, "", "", "", f"skipped: {s.skipped}"])
            continue
        e = estimate(s, cpus, cpus_per_trial, max_concurrent, repeats)
        spread = sorted(set(e.epochs))
        epochs = str(spread[0]) if len(spread) == 1 else "/".join(map(str, spread))
        total += e.seconds
        total_epochs += e.trial_epochs
        rows.append([i, s.key, s.lab, s.search.name, dataset, e.trials, epochs,
                     f"{'<= ' if e.asha else ''}{e.trial_epochs}", ("<= " if e.asha else "") + _minutes(e.seconds)])
    head = ["#", "section", "lab", "search", "dataset", "trials", "epochs per trial", "trial-epochs", "est. time"]
    lines = [f"{plan.title} ({plan.path}){', quick run' if plan.quick else ''}", f"Question: {plan.question}", "",
             tabulate(rows, headers=head, tablefmt="github"), "",
             f"Total: {total_epochs} trial-epochs, about {_minutes(total)} on {cpus:g} CPUs"
             + (f", with ~{_minutes(REFERENCE_S)} each to train the reference classifier of {', '.join(references)} "
                f"(not cached yet)." if references else "."),
             f"Time {ESTIMATE_NOTE}.", "Nothing was run (--dry-run)."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- running the plan
def default_experiment(plan: Plan, root: str) -> tuple[str, bool]:
    """(name, whether it continues): the newest unfinished reproduce of this plan at this size under `root`,
    so that rerunning a killed command as it was typed continues it; else a new reproduce-LAB[-quick]-TIME."""
    prefix = f"reproduce-{plan.name}{'-quick' if plan.quick else ''}-"
    for folder in sorted(Path(root).glob(prefix + "*"), reverse=True):  # names end in a sortable time
        run = read_json(folder / RUN_FILE)
        if run and run.get("plan_name") == plan.name and bool(run.get("quick")) == plan.quick and not run.get("complete"):
            return folder.name, True
    return prefix + time.strftime("%Y%m%d-%H%M%S"), False


def section_state(folder: Path) -> str:
    """'done' (summary.json says complete), 'resumed' (an interrupted search: its state is there) or 'running'."""
    from tune_lab.paths import STATE_FILE

    if complete_summary(folder):
        return "done"
    return "resumed" if (folder / STATE_FILE).is_file() else "running"


def resume_search(folder: Path, address: str | None = None) -> dict[str, Any]:
    """Continue the interrupted search in `folder` and return its summary: `tune-lab resume`, and a
    reproduce's interrupted section. A state file cut off by the kill is restored from its last whole copy."""
    from tune_lab.ray_internals import require_tested_ray

    require_tested_ray()  # before driver_state imports Ray
    from tune_lab.driver_state import SNAPSHOT, StateCutOff, repair
    from tune_lab.runner import load_state, run_search

    try:
        repaired = repair(folder)
    except StateCutOff as exc:
        raise UsageError(str(exc)) from None
    if repaired:
        print(f"tune-lab: the search was killed while Ray wrote its state, which was cut off ({', '.join(repaired)}); "
              f"restored the last whole copy from {folder / SNAPSHOT}", file=sys.stderr)
    search, opts, tracking = load_state(folder.resolve())
    opts.storage, opts.experiment = str(folder.resolve().parent), folder.name
    if address:
        opts.address = address
    return run_search(search, opts, resume=tracking)


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
    from tune_lab.runner import run_search, start_ray

    root = paths.results_root(opts.storage)
    if "://" in root:
        raise UsageError(f"reproduce: --storage {root}: a reproduce writes its folder on a local disk (or a shared mount); "
                         f"give a local path")
    experiment, continued = (opts.experiment, False) if opts.experiment else default_experiment(plan, root)
    folder = Path(root) / experiment
    if continued:
        print(f"tune-lab: continuing the unfinished {folder} (give --experiment NAME to start another)", flush=True)
    run = read_json(folder / RUN_FILE)
    _started_with(plan, folder, run)
    folder.mkdir(parents=True, exist_ok=True)
    if run is None:
        uri = paths.tracking_uri(opts.tracking_uri, root)  # the results root's store, where `tune-lab ui` looks
        run = {"plan": str(plan.path), "plan_name": plan.name, "title": plan.title, "quick": plan.quick,
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "repeats": repeats,
               "options": {k: getattr(opts, k) for k in PASSED_ON}, "mlflow": {"tracking_uri": uri}, "sections": {}}
        write_json(run, str(folder), RUN_FILE)
    uri = run["mlflow"]["tracking_uri"]
    parent = _reproduce_run(run, plan, folder)
    write_json(run, str(folder), RUN_FILE)
    print(f"tune-lab: reproduce {plan.name}{' --quick' if plan.quick else ''}: {len(plan.sections)} sections; results in {folder} "
          f"(interrupted, the same command continues it)", flush=True)

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
            write_json(run, str(folder), RUN_FILE)
            if parent is not None and record["parent_run_id"]:
                parent.client.set_tag(parent.run_id, f"tune_lab.section.{section.key}", record["parent_run_id"])
            if summary.get("interrupted"):
                print(f"\ntune-lab: reproduce interrupted in section {section.key}; nothing is lost. The same command "
                      f"continues it (or name it: --experiment {experiment})", file=sys.stderr)
                return 130
            if any(t["status"] == "errored" for t in summary["trials"]):
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
    write_json(run, str(folder), RUN_FILE)
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
    from tune_lab.tracking import SearchRun

    uri = run["mlflow"]["tracking_uri"]
    if run["mlflow"].get("run_id"):
        return SearchRun.attach(uri, run["mlflow"]["run_id"])
    parent = SearchRun(uri, "reproduce", folder.name, paths.artifact_root(uri), tags={
        "tune_lab.reproduce_plan": plan.name, "tune_lab.quick": str(plan.quick).lower(),
        "tune_lab.results": str(folder), "mlflow.note.content": plan.question,
    })
    run["mlflow"]["run_id"] = parent.run_id
    return parent


# --------------------------------------------------------------------------- the combined report
FIGURE_LINE = re.compile(r"^!\[(?P<caption>.*)\]\((?P<name>[^)]+\.png)\)$", re.MULTILINE)


def _percent(metric: str) -> bool:
    return metric.endswith("_acc") or metric in ("readable",)


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}%" if _percent(metric) else f"{value:.4g}"


def _gap(metric: str, a: float, b: float) -> str:
    return f"{100 * abs(a - b):.2f} points" if _percent(metric) else f"{abs(a - b):.4g}"


def answer(record: dict[str, Any]) -> str:
    """One paragraph answering the section's question from its results: the best setting, its metric
    (mean ± std over seeds where there are several), how far the others are behind, the lab's figure."""
    from reports.published import LAB_CONDITIONS
    from reports.table import LAB_COLUMN, comparison_rows, header, setting_label, sweep_verdict
    from reports.seeds import repeated, verdict_text

    metric, best = record["metric"], record.get("best")
    scored = [t for t in record["trials"] if (t.get("best") or {}).get(metric) is not None]
    if not best or not scored:
        return f"No trial of this search produced a result ({len(record['trials'])} trials)."
    name = header(metric).removesuffix(" %")  # the value carries its unit
    test = metric.replace("val_", "test_", 1) if metric.startswith("val_") else None
    seeded = repeated(record)

    def score(trial: dict[str, Any], m: str) -> str:
        stats = (trial.get("seed_stats") or {}).get(m) if seeded else None
        if stats and stats.get("std") is not None:
            scale = 100 if _percent(m) else 1
            unit = "%" if _percent(m) else ""
            return f"{scale * stats['mean']:.2f} ± {scale * stats['std']:.2f}{unit} over {stats['n']} seeds"
        return _value(m, (trial.get("best") or {}).get(m))

    # a search of variants alone (one one-value sweep, e.g. faithful / corrected) is named by its variants
    by_variant = record.get("variants") and all(len(v) == 1 for v in (record.get("sweeps") or {}).values())

    def setting(trial: dict[str, Any]) -> str:
        return trial["setting"].get("variant") if by_variant else setting_label(trial, record)

    winner = next(t for t in record["trials"] if t["trial_id"] == best["trial_id"])
    label = setting(winner)
    text = [f"Best: **{label}**, {name} {score(winner, metric)}"
            + (f" (test: {score(winner, test)})" if test and test in record["metrics"] else "")
            + f", at epoch {best['epoch']} of {winner['epochs_run']}; {len(scored)} settings compared on {metric} "
            f"({'higher' if record['mode'] == 'max' else 'lower'} is better) on {record['dataset']}."]
    others = sorted((t for t in scored if t["trial_id"] != best["trial_id"]),
                    key=lambda t: t["best"][metric], reverse=record["mode"] == "max")
    if record.get("sweeps") and not by_variant:  # a lab's table: the best of each sweep says more than a ranking
        text.append(_sweep_answer(record, scored))
    elif others:
        behind = []
        for t in others[:4]:
            verdict = verdict_text(t.get("verdict")) if seeded else ""
            stopped = ", stopped early" if t["status"] == "stopped early" else ""
            gap = abs(t["best"][metric] - best["metrics"][metric])
            how_far = f"{_gap(metric, t['best'][metric], best['metrics'][metric])} behind" if gap > 0 else "tied"
            behind.append(f"{setting(t)} {how_far} ({_value(metric, t['best'][metric])}{stopped}"
                          f"{', ' + verdict if verdict else ''})")
        more = f", and {len(others) - 4} more" if len(others) > 4 else ""
        text.append("The others: " + "; ".join(behind) + more + ".")
    if record["lab"] not in LAB_CONDITIONS:  # the lab published no figure to compare with
        pass
    elif record.get("sweeps"):
        verdict = sweep_verdict(record)
        text.append(("Against the lab's published table: " + verdict.replace("\n", "; ") + ".") if verdict else
                    "The lab's published figures are shown only beside a run of its own experiment (its dataset, "
                    "every training image, its settings); this run is not one.")
    else:
        row = next(r for r in comparison_rows(record) if r["best"] == "*")
        if row.get(LAB_COLUMN) not in (None, ""):
            text.append(f"The lab published {row[LAB_COLUMN]}% test accuracy for this setting.")
    if record.get("subset"):
        text.append(f"Trained on {record['subset']:,} training samples (--subset), not the whole split.")
    return " ".join(text)


def _sweep_answer(record: dict[str, Any], scored: list[dict[str, Any]]) -> str:
    """'Best of each sweep (by val acc): corrected: epochs=20 (90.74%), ...; faithful: ...': for each variant
    and swept parameter, the best of the trials that change only that parameter from the base setting."""
    metric, base = record["metric"], record["fixed"]
    pick = max if record["mode"] == "max" else min
    parts = []
    for variant in record.get("variants") or {"": {}}:
        best_of = []
        for param, values in record["sweeps"].items():
            row = [t for t in scored if t["config"].get("variant", "") == variant and t["config"].get(param) in values
                   and all(t["config"].get(q) == base[q] for q in record["sweeps"] if q != param)]
            if len(row) > 1:
                top = pick(row, key=lambda t: t["best"][metric])
                best_of.append(f"{param}={top['config'][param]} ({_value(metric, top['best'][metric])})")
        if best_of:
            parts.append(f"{variant + ': ' if variant else ''}{', '.join(best_of)}")
    from reports.table import header

    return f"Best of each sweep (by {header(metric).removesuffix(' %')}): " + "; ".join(parts) + "." if parts else ""


def _own_report(section_dir: Path, tables: list[str]) -> tuple[list[tuple[str, Path]], str]:
    """What the section's own report adds to its tables: (caption, PNG) of every figure, in its order,
    and the lab's own text (e.g. seq2seq's sample translations) as Markdown under ### headings."""
    report_md = section_dir / "report" / "report.md"
    if not report_md.is_file():
        return [], ""
    text = report_md.read_text()
    found = [(m["caption"], section_dir / "report" / m["name"]) for m in FIGURE_LINE.finditer(text)]
    figures = [(caption, path) for caption, path in found if path.is_file()]
    known = set(tables) | {caption for caption, _ in found}
    extra = []
    for part in re.split(r"(?m)^## ", text)[1:]:  # each '## ' section: a table, a figure, or the lab's text
        heading, _, body = part.partition("\n")
        if heading.strip() not in known:
            extra.append(f"### {heading.strip()}\n{body.rstrip()}")
    return figures, "\n\n".join(extra)


def write_combined_report(plan: Plan, folder: Path) -> Path:
    """`folder`/report: report.md and a self-contained report.html with every section's answer, tables
    and figures, plus each section's table CSV and PNGs (named SECTION-FILE)."""
    from reports.build import TEMPLATES, markdown_blocks
    from reports.table import report_tables

    run = read_json(folder / RUN_FILE) or {}
    out = folder / "report"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sections = []
    for section in plan.sections:
        where = folder / section.key
        record = read_json(where / "summary.json")
        entry: dict[str, Any] = {"key": section.key, "title": section.title, "question": section.question,
                                 "search": f"{section.lab} --search {section.search.name}", "figures": [],
                                 "tables": [], "answer": "", "facts": "", "own_report": "", "lab_text": "", "lab_blocks": [],
                                 "missing": f"left out of the quick run: {section.skipped}" if section.skipped else ""}
        if not section.skipped and not (record or {}).get("complete"):
            entry["missing"] = "not run to its end yet: rerun the same command to finish it"
        if record and not entry["missing"]:
            entry["answer"] = answer(record)
            entry["tables"] = report_tables(record)
            wall = (run.get("sections") or {}).get(section.key, {}).get("wall_s")
            subset = f" ({record['subset']:,} training samples)" if record.get("subset") else ""
            took = f"{wall:.0f} s" if wall else ""
            entry["facts"] = (f"`tune-lab {section.lab} --search {section.search.name}` on {record['dataset']}{subset}, "
                              f"{len(record['trials'])} trials, selected on {record['metric']} ({record['mode']})"
                              f"{'; ' + took if took else ''}")
            entry["own_report"] = f"../{section.key}/report/report.html"
            csv = where / "report" / "table.csv"
            if csv.is_file():
                shutil.copy(csv, out / f"{section.key}-table.csv")
            figures, entry["lab_text"] = _own_report(where, [heading for heading, _, _ in entry["tables"]])
            entry["lab_blocks"] = markdown_blocks(entry["lab_text"])
            for caption, png in figures:
                name = f"{section.key}-{png.name}"
                shutil.copy(png, out / name)
                entry["figures"].append((caption, name, base64.b64encode(png.read_bytes()).decode("ascii")))
        sections.append(entry)
    context = {
        "title": plan.title, "question": plan.question, "quick": plan.quick, "sections": sections,
        "plan": str(plan.path), "started": run.get("started", ""), "folder": str(folder),
        "wall": sum(s.get("wall_s", 0.0) for s in (run.get("sections") or {}).values()),
    }
    for name in ("report.md", "report.html"):
        (out / name).write_text(TEMPLATES.get_template(f"reproduce.{name.split('.')[1]}.j2").render(context))
    return out


# --------------------------------------------------------------------------- the command
REPRODUCE_FLAGS = ("data_dir", "storage", "tracking_uri", "experiment", "seed", "max_concurrent", "cpus_per_trial",
                   "gpus_per_trial", "address", "max_failures")


def add_parser(sub: Any) -> None:
    """`tune-lab reproduce LAB [--quick] [--dry-run] [options]`."""
    p = sub.add_parser("reproduce", help="a whole lab report: every search of its plan, one combined report")
    p.add_argument("plan", metavar="LAB", help=f"a lab's plan ({', '.join(plan_names())}, in search_spaces/reproduce/) "
                                               "or your own plan's .yaml path")
    p.add_argument("--quick", action="store_true", help="every search shrunk (subsets, epochs) by the plan's quick: blocks")
    p.add_argument("--dry-run", action="store_true", help="print the plan and an estimate of its time; run nothing")
    p.add_argument("--repeats", type=int, metavar="N", help="seeds per configuration in every search")
    helps = {"experiment": "name of the reproduce's results folder (default: the newest unfinished "
                           "reproduce-LAB[-quick]-* there, to continue it, else a new reproduce-LAB[-quick]-TIME)",
             "storage": "results root the reproduce folder goes in (default: $TUNE_LAB_HOME, else ./tune-lab-results)"}
    SearchOptions.add_flags(p, only=REPRODUCE_FLAGS, helps=helps)


def command(args: argparse.Namespace) -> int:
    from tune_lab.spaces import REPEATS_ALLOWED, valid_repeats

    if args.repeats is not None and not valid_repeats(args.repeats):
        raise UsageError(f"--repeats {args.repeats}: {REPEATS_ALLOWED}")
    plan = load_plan(args.plan, quick=args.quick)
    if args.dry_run:
        print(dry_run(plan, float(os.cpu_count() or 1), args.cpus_per_trial, args.max_concurrent, args.repeats))
        return 0
    opts = SearchOptions(**{name: getattr(args, name) for name in REPRODUCE_FLAGS})
    return run_plan(plan, opts, args.repeats)

