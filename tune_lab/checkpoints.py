"""Find the best checkpoint of a finished search, for commands that use a trained model.

`tune-lab translate` and `tune-lab generate` work from "the latest search of this lab" unless
told an experiment: the latest is the newest summary.json under the results root whose lab
matches, and its best trial's checkpoint is the one that search selected on validation data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.record import Summary
from reports.source import SearchNotFound, find_summary


@dataclass(frozen=True)
class BestCheckpoint:
    folder: Path  # the checkpoint directory (holds checkpoint.pt)
    experiment: str
    trial_id: str
    metrics: dict[str, Any]


def _read(summary: Path) -> dict[str, Any] | None:
    try:
        return json.loads(summary.read_text())
    except (OSError, ValueError):
        return None  # a half-copied or foreign file is not a search of ours


def _best_of(record: Summary, where: Path) -> BestCheckpoint:
    best = record.get("best") or {}
    folder = best.get("checkpoint")
    if not folder:
        raise SearchNotFound(f"{where}: search {record.get('experiment')!r} has no successful trial to load")
    if not Path(folder).is_dir():
        raise SearchNotFound(f"{where}: the best checkpoint {folder} is gone (moved or deleted?)")
    return BestCheckpoint(Path(folder), record["experiment"], best.get("trial_id", ""), best.get("metrics") or {})


def best_checkpoint(lab: str, results_root: str, experiment: str | None = None) -> BestCheckpoint:
    """The best checkpoint of `experiment` (a name under the root, or a folder), else of the newest search of `lab`."""
    if experiment:
        summary = find_summary(experiment, results_root)
        if summary is None:
            raise SearchNotFound(f"--experiment {experiment}: no finished search there "
                                 f"(looked for summary.json in {experiment} and {Path(results_root) / experiment})")
        record = _read(summary) or {}
        if record.get("lab") != lab:
            raise SearchNotFound(f"--experiment {experiment}: that is a search of lab {record.get('lab')!r}, not {lab!r}")
        return _best_of(record, summary)
    found = []
    for summary in Path(results_root).glob("*/summary.json"):
        record = _read(summary)
        if record and record.get("lab") == lab and (record.get("best") or {}).get("checkpoint"):
            found.append((summary.stat().st_mtime, summary, record))
    if not found:
        raise SearchNotFound(f"no finished {lab} search with a checkpoint under {results_root}; "
                             f"run `tune-lab {lab} --search ...` first, or name one with --experiment")
    _, summary, record = max(found, key=lambda item: item[0])
    return _best_of(record, summary)
