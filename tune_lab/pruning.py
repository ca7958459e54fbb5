"""After a search has finished: delete the checkpoints nobody will load (`--keep-checkpoints`).

Each trial's folder holds Ray's `checkpoint_NNNNNN/` folders beside its result.json,
params and progress.csv. Once the search is complete nothing resumes from them: only the best
trial's (which `tune-lab generate` / `translate` and the report's lab figures load), or the best
N trials', are worth their disk. Everything else in a trial's folder stays.

An interrupted search is never pruned: `tune-lab resume` continues its trials from these folders.
Through pyarrow's filesystem layer, the one Ray's own storage uses, so a results root at a URI
(file://, s3://, gs://) is pruned the same way as a local one.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from reports.table import ranked_trials
from labspec.files import filesystem

CHECKPOINT_PREFIX = "checkpoint_"  # Ray's checkpoint folders in a trial's folder


@dataclass
class Pruning:
    kept: list[str]  # trial ids whose best checkpoint stays, best first
    doomed: list[str]  # checkpoint folders to delete
    folder: str  # the search's (a local path or a URI)

    def line(self, freed: int) -> str:
        best = f" (best: {self.kept[0]})" if self.kept else ""
        return (f"tune-lab: kept the checkpoints of {len(self.kept)} trial(s){best}; "
                f"deleted {len(self.doomed)} other checkpoint folder(s), freed {freed / 1e6:.1f} MB")


def plan(summary: dict[str, Any], keep: str | int) -> Pruning | None:
    """What `keep` leaves of a finished search's checkpoints; None for `all` (nothing to do).

    The trials not kept lose their `checkpoint` in `summary` (set to None) here, so that a
    summary.json written before the folders go never points at a deleted one. A kept trial keeps
    only the checkpoint its row names (its best epoch's; promotion ASHA may also have kept its
    latest, to resume from).
    """
    if keep == "all":
        return None
    count = 1 if keep == "best" else int(keep)
    rows = summary["trials"]
    best_id = (summary.get("best") or {}).get("trial_id")  # the one generate / translate / the report load
    # the report's ranking (ties in trial order), of the trials with a checkpoint and a result
    scored = (r for r in ranked_trials(summary) if (r.get("best") or {}).get(summary["metric"]) is not None)
    ranked = [r for r in scored if r.get("checkpoint")]
    kept = sorted(ranked, key=lambda r: r["trial_id"] != best_id)[:count]
    wanted = {_fs_path(r["checkpoint"]) for r in kept}
    fs, _ = filesystem(summary["storage"])
    doomed = []
    for row in rows:
        if row.get("path"):
            doomed += [c for c in _checkpoint_folders(fs, _fs_path(row["path"])) if c not in wanted]
        if row.get("checkpoint") and _fs_path(row["checkpoint"]) not in wanted:
            row["checkpoint"] = None
    return Pruning(kept=[r["trial_id"] for r in kept], doomed=doomed, folder=summary["storage"])


def apply(pruning: Pruning) -> int:
    """Delete the planned checkpoint folders; returns the bytes freed."""
    fs, _ = filesystem(pruning.folder)
    freed = 0
    for path in pruning.doomed:
        try:
            size = _size(fs, path)
            fs.delete_dir(path)
        except OSError as exc:  # the search's results stand; a folder left behind only costs disk
            print(f"tune-lab: could not delete {path}: {exc}", file=sys.stderr)
            continue
        freed += size
    return freed


def _fs_path(path: str) -> str:
    """A path as Ray records it (local, or inside a URI's filesystem), as pyarrow lists it."""
    return filesystem(path)[1].rstrip("/")


def _checkpoint_folders(fs: Any, trial_dir: str) -> list[str]:
    import pyarrow.fs

    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(trial_dir, allow_not_found=True))
    except (FileNotFoundError, OSError):
        return []
    return sorted(e.path for e in entries
                  if e.type == pyarrow.fs.FileType.Directory and e.base_name.startswith(CHECKPOINT_PREFIX))


def _size(fs: Any, path: str) -> int:
    import pyarrow.fs

    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True))
    return sum(i.size or 0 for i in infos if i.type == pyarrow.fs.FileType.File)
