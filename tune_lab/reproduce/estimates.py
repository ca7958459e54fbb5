"""`tune-lab reproduce LAB --dry-run`: the plan as a table of searches, trials and epochs, with an
estimate of its time on this machine, computed without Ray or torch.

The estimate multiplies each trial's epochs by per-lab costs measured on the 2-core CPU tune-lab is
developed on (`COSTS`), spreads the trials over the CPUs as Ray would, and adds what a search and a
trial cost besides their epochs. It is a guide for planning, not a promise: the machine's load
moves it by 2x.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_lab.reproduce.plan import Plan, Section


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
                 "2-core CPU, one torch thread per trial (tune_lab/reproduce/estimates.py, COSTS), trials side by side as "
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

    from tune_lab.reproduce.plan import retrained_lines

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
             f"Time {ESTIMATE_NOTE}.", *retrained_lines(plan), "Nothing was run (--dry-run)."]
    return "\n".join(lines)
