"""A whole copy of Ray's driver state, kept so that a killed search can always be resumed.

Ray writes its experiment state (trial statuses, searcher, variant generator) into the
results folder from a background thread, truncating each file before copying it in. A
driver killed during that copy leaves the file empty, and `Tuner.restore` then logs
"Failed to restore the run state" and carries on with no trials at all (CI once killed a
search at exactly that moment). `DriverStateKeeper` snapshots the files into one zip,
written atomically, whenever Ray has saved them; `repair` puts the snapshot back before a
resume when Ray's own copy is cut off.
"""
from __future__ import annotations

import io
import json
import pickle
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ray.tune import Callback

from labspec.files import write_bytes_whole
from tune_lab.ray_internals import STATE_FILES, driver_staging_folder

SNAPSHOT = "driver-state.zip"


class StateCutOff(RuntimeError):
    """Ray's saved state is cut off and there is no whole copy to put back."""


def state_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if any(fnmatch(p.name, pattern) for pattern in STATE_FILES))


def newest_state_files(folder: Path) -> list[Path]:
    """Of each kind of state file, the one Ray restores from: the newest by name (a resumed search's folder
    holds one per driver that ran it, and Ray's `_load_newest_checkpoint` takes the greatest name)."""
    newest: dict[str, Path] = {}
    for path in state_files(folder):
        kind = next(pattern for pattern in STATE_FILES if fnmatch(path.name, pattern))
        if kind not in newest or path.name > newest[kind].name:
            newest[kind] = path
    return sorted(newest.values())


def is_whole(data: bytes) -> bool:
    """Whether a state file was written to its end: it parses as JSON or unpickles.

    Both are tried whatever the name: Ray's basic-variant-state-*.json is a cloudpickle.
    """
    for load in (json.loads, pickle.loads):
        try:
            load(data)
            return True
        except Exception:  # a truncated file fails in any number of ways; all mean "cut off"
            pass
    return False


def _write_snapshot(folder: Path, contents: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:  # fast: it runs in Tune's loop
        for name, data in contents.items():
            archive.writestr(name, data)
    write_bytes_whole(folder / SNAPSHOT, buffer.getvalue())


class DriverStateKeeper(Callback):
    """After every step of Tune's loop, snapshot Ray's state files into the results folder.

    The snapshot is taken from the driver's staging folder, where Ray saves the state in
    this same thread before a background thread copies it on: there the files are always
    whole and never older than the copy in the results folder.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._kept: tuple[Any, ...] | None = None

    def keep(self, staging: str | Path) -> bool:
        """Snapshot the state files saved in `staging` if they changed since the last snapshot."""
        try:
            files = newest_state_files(Path(staging))
            stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
            if not files or stamp == self._kept:
                return False
            contents = {p.name: p.read_bytes() for p in files}
        except FileNotFoundError:  # nothing saved yet
            return False
        _write_snapshot(self.folder, contents)
        self._kept = stamp
        return True

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if trials:
            self.keep(driver_staging_folder(trials[0]))

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.on_step_end(0, trials)


def repair(folder: str | Path) -> list[str]:
    """Where Ray's state files are cut off, put the last whole snapshot back; return what was repaired.

    A cut-off file the snapshot does not have (a resumed driver killed during its very first
    save) is removed, so that Ray restores from the previous driver's whole one.
    """
    folder = Path(folder)
    cut = [p for p in state_files(folder) if not is_whole(p.read_bytes())]
    if not cut:
        return []
    snapshot = folder / SNAPSHOT
    if not snapshot.is_file():
        raise StateCutOff(f"{cut[0]}: Ray's saved search state is cut off (the driver was killed while writing it) "
                          f"and there is no whole copy ({snapshot}) to restore; start the search again")
    with zipfile.ZipFile(snapshot) as archive:
        kept = {name: archive.read(name) for name in archive.namelist()}
    for name, data in kept.items():
        write_bytes_whole(folder / name, data)
    for path in cut:
        if path.name not in kept:
            path.unlink()
    if not any(p.name.startswith("experiment_state-") for p in state_files(folder)):
        raise StateCutOff(f"{cut[0]}: Ray's saved search state is cut off and {snapshot} holds no whole copy of it; "
                          "start the search again")
    return [p.name for p in cut]
