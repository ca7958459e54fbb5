"""`tune-lab reproduce LAB --dry-run`: the plan as a table of searches, trials and epochs, with an
estimate of its time on this machine, computed without Ray or torch.

The estimate multiplies each trial's epochs by the cost its lab declares (`register_lab(cost=...)`,
measured on the 2-core CPU tune-lab is developed on), spreads the trials over the CPUs as Ray would,
and adds what a search and a trial cost besides their epochs. It is a guide for planning, not a promise: the machine's load
moves it by 2x.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_lab.reproduce.plan import Plan, Section


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
                 "2-core CPU, one torch thread per trial (each lab's `cost=` in labspec/hparams.py), trials side by side as "
                 "the CPUs allow, plus ~20 s per search; ASHA searches (stops early) are upper bounds; rough: "
                 "the machine's load moves it by 2x")


@dataclass
class Estimate:
    trials: int
    epochs: list[int]  # per trial
    seconds: float | None  # None: the lab declares no cost (labspec.registry.Cost)
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
    size = TRAIN_SIZE.get(dataset, section.subset)  # a dataset of one's own: known only when subset
    seeds = repeats or search.repeats
    epochs, asha = [int(c["epochs"]) for c in configs], search.scheduler in ("asha", "promotion")
    costs = [search.spec.cost_of(config) for config in configs]
    if size is None or None in costs:  # nothing measured to plan with: said so, not guessed
        return Estimate(trials=len(configs), epochs=epochs, seconds=None, asha=asha)
    per_trial = []
    for config, cost in zip(configs, costs):
        samples = min(section.subset or size, size)
        if search.lab == "seq2seq" and int(config.get("max_length", 10)) > 10:
            samples = min(section.subset or int(size * 1.15), int(size * 1.15))
        evaluation = cost.eval_s * (config.get("quality_samples", 2000) / 2000 if cost.quality_scaled else 1)
        per_trial.append(int(config["epochs"]) * (samples * cost.sample_s + evaluation) * seeds + TRIAL_OVERHEAD_S)
    slots = max(1, int(cpus // (cpus_per_trial or 1))) if cpus_per_trial != 0 else len(configs)
    slots = max(1, min(slots, max_concurrent or slots, len(configs)))
    wall = max(sum(per_trial) / slots, max(per_trial, default=0.0)) + SEARCH_OVERHEAD_S
    return Estimate(trials=len(configs), epochs=epochs, seconds=wall, asha=asha)


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

    rows, total, total_epochs, references, unknown = [], 0.0, 0, [], []
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
        total_epochs += e.trial_epochs
        if e.seconds is None:
            unknown.append(s.key)
        else:
            total += e.seconds
        shown = "unknown" if e.seconds is None else ("<= " if e.asha else "") + _minutes(e.seconds)
        rows.append([i, s.key, s.lab, s.search.name, dataset, e.trials, epochs,
                     f"{'<= ' if e.asha else ''}{e.trial_epochs}", shown])
    head = ["#", "section", "lab", "search", "dataset", "trials", "epochs per trial", "trial-epochs", "est. time"]
    lines = [f"{plan.title} ({plan.path}){', quick run' if plan.quick else ''}", f"Question: {plan.question}", "",
             tabulate(rows, headers=head, tablefmt="github"), "",
             f"Total: {total_epochs} trial-epochs, about {_minutes(total)} on {cpus:g} CPUs"
             + (f", with ~{_minutes(REFERENCE_S)} each to train the reference classifier of {', '.join(references)} "
                f"(not cached yet)" if references else "")
             + (f", not counting {', '.join(unknown)}: its lab declares no cost (register_lab(cost=...)) "
                f"or its dataset's size is not known." if unknown else "."),
             f"Time {ESTIMATE_NOTE}.", *retrained_lines(plan), "Nothing was run (--dry-run)."]
    return "\n".join(lines)
