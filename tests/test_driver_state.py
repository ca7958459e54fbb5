"""The driver-state keeper: a search killed while Ray copies its state can still be resumed."""
from __future__ import annotations

import json
import pickle
import shutil
import zipfile

import pytest

from tune_lab.driver_state import SNAPSHOT, DriverStateKeeper, StateCutOff, repair

STATE = "experiment_state-2026-11-24_09-25-58.json"
VARIANTS = "basic-variant-state-2026-11-24_09-25-58.json"
SEARCHER = "searcher-state-2026-11-24_09-25-58.pkl"


def save_state(staging, finished: int) -> dict[str, bytes]:
    """What Ray's driver saves in its staging folder (the variant state is a pickle despite its name)."""
    staging.mkdir(exist_ok=True)
    contents = {
        STATE: json.dumps({"trial_data": [f"trial {i}" for i in range(4)], "finished": finished}).encode(),
        VARIANTS: pickle.dumps({"variants_left": 4 - finished}),
        SEARCHER: pickle.dumps({"observed": list(range(finished))}),
    }
    for name, data in contents.items():
        (staging / name).write_bytes(data)
    (staging / "run_trial_00000").mkdir(exist_ok=True)  # trial staging folders are not driver state
    return contents


def sync_up(staging, folder) -> None:
    for path in staging.glob("*.*"):
        shutil.copy(path, folder / path.name)


@pytest.fixture
def folders(tmp_path):
    staging, folder = tmp_path / "driver_artifacts", tmp_path / "results"
    folder.mkdir()
    return staging, folder


def test_a_state_file_cut_off_by_a_kill_is_put_back_whole(folders):
    staging, folder = folders
    keeper = DriverStateKeeper(folder)
    assert not keeper.keep(staging)  # Ray has saved nothing yet
    save_state(staging, finished=1)
    assert keeper.keep(staging)
    assert not keeper.keep(staging)  # nothing changed: no second write
    latest = save_state(staging, finished=2)
    assert keeper.keep(staging)
    with zipfile.ZipFile(folder / SNAPSHOT) as archive:
        assert sorted(archive.namelist()) == sorted(latest)
    sync_up(staging, folder)
    (folder / STATE).write_bytes(latest[STATE][:25])  # the kill came mid-copy

    assert repair(folder) == [STATE]
    for name, data in latest.items():
        assert (folder / name).read_bytes() == data
    assert repair(folder) == []  # whole now: nothing more to do


def test_whole_state_is_left_as_ray_wrote_it(folders):
    staging, folder = folders
    keeper = DriverStateKeeper(folder)
    save_state(staging, finished=1)
    keeper.keep(staging)
    synced = save_state(staging, finished=2)
    sync_up(staging, folder)  # killed before the keeper's next step: the snapshot is one save behind
    assert repair(folder) == []
    assert all((folder / name).read_bytes() == data for name, data in synced.items())


def test_a_resumed_drivers_cut_off_first_save_falls_back_to_the_previous_drivers_state(folders):
    staging, folder = folders
    keeper = DriverStateKeeper(folder)
    first = save_state(staging, finished=2)
    keeper.keep(staging)
    sync_up(staging, folder)
    second = folder / "experiment_state-2026-11-24_10-00-00.json"  # the resumed driver, killed in its first save
    second.write_bytes(b"")

    assert repair(folder) == [second.name]
    assert not second.exists()
    assert (folder / STATE).read_bytes() == first[STATE]


def test_a_cut_off_state_without_a_snapshot_is_a_clear_error(folders):
    staging, folder = folders
    save_state(staging, finished=1)
    sync_up(staging, folder)
    (folder / VARIANTS).write_bytes(b"\x80\x05\x95")
    with pytest.raises(StateCutOff, match=f"{VARIANTS}: Ray's saved search state is cut off.*start the search again"):
        repair(folder)


def test_resume_of_a_cut_off_search_without_a_snapshot_stops_with_that_error(folders, capsys):
    from tune_lab.cli import EXIT_USAGE, main
    from tune_lab.paths import STATE_FILE

    staging, folder = folders
    save_state(staging, finished=1)
    sync_up(staging, folder)
    (folder / STATE_FILE).write_text("{}")  # tune-lab's own record of the search
    (folder / STATE).write_bytes(b"")
    assert main(["resume", str(folder)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"tune-lab: error: {folder / STATE}: Ray's saved search state is cut off" in err
    assert (folder / VARIANTS).is_file() and (folder / STATE).is_file()  # nothing deleted


def test_the_snapshot_holds_the_newest_state_of_each_kind_only(folders):
    """A resumed search's folder holds the state of every driver that ran it (a 1,000-trial search killed twice:
    41 MB, zipped at every step); Ray restores from the newest of each kind, and so does `repair`."""
    staging, folder = folders
    save_state(staging, finished=1)
    newer = {name.replace("09-25-58", "10-00-00"): data for name, data in save_state(staging, finished=3).items()}
    for name, data in newer.items():
        (staging / name).write_bytes(data)
    DriverStateKeeper(folder).keep(staging)
    with zipfile.ZipFile(folder / SNAPSHOT) as archive:
        assert sorted(archive.namelist()) == sorted(newer)
