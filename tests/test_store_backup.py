"""The cluster's MLflow store survives `ray down`: copied out, restored by the next `ray up`.

A real MLflow SQLite store, copied to a local folder standing in for the bucket (the same
pyarrow filesystem layer as s3://), the head's disk then "deleted", and the runs read back.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tune_lab.store_backup import backup, restore


def _store_with_a_run(db: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.create_run(client.create_experiment("mlp"), run_name="survivor")
    for step in (1, 2, 3):
        client.log_metric(run.info.run_id, "val_acc", 0.5 + step / 10, step=step)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _history(db: Path, run_id: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    assert client.get_run(run_id).data.tags["mlflow.runName"] == "survivor"
    return [(m.step, m.value) for m in client.get_metric_history(run_id, "val_acc")]


@pytest.mark.parametrize("scheme", ["path", "file://"])
def test_runs_come_back_after_the_heads_disk_is_gone(tmp_path, scheme):
    head, bucket = tmp_path / "head", tmp_path / "bucket"
    head.mkdir()
    db = head / "mlflow.db"
    run_id = _store_with_a_run(db)
    uri = f"{'file://' if scheme == 'file://' else ''}{bucket}/tune-lab/mlflow/mlflow.db"
    backup(db, uri)
    for leftover in head.iterdir():  # `ray down`: the head's disk is deleted
        leftover.unlink()
    assert restore(uri, db) == f"restored {db} from {uri}"
    assert _history(db, run_id) == [(1, 0.6), (2, 0.7), (3, 0.8)]
    assert [p.name for p in (bucket / "tune-lab" / "mlflow").iterdir()] == ["mlflow.db"]  # no .partial left


def test_restore_never_overwrites_a_live_store_and_starts_fresh_without_a_copy(tmp_path):
    db = tmp_path / "head" / "mlflow.db"
    uri = str(tmp_path / "bucket" / "mlflow.db")
    assert restore(uri, db) == f"no copy at {uri} yet: MLflow starts a new store in {db}"
    assert not db.exists()
    db.parent.mkdir()
    run_id = _store_with_a_run(db)
    backup(db, uri)
    before = db.read_bytes()
    assert restore(uri, db).startswith(f"{db} exists: kept")
    assert db.read_bytes() == before and _history(db, run_id)
    (tmp_path / "bucket" / "bad.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(Exception):
        restore(str(tmp_path / "bucket" / "bad.db"), tmp_path / "other" / "mlflow.db")
    assert not (tmp_path / "other" / "mlflow.db").exists()  # setup fails loudly; no empty store to back up over the real one


def test_the_keeper_copies_once_more_when_the_head_shuts_down(tmp_path):
    db = tmp_path / "mlflow.db"
    run_id = _store_with_a_run(db)
    uri = str(tmp_path / "bucket" / "mlflow.db")
    keeper = subprocess.Popen([sys.executable, "-m", "tune_lab.store_backup", "keep", str(db), uri, "--every", "3600"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "every 3600 s and at shutdown" in keeper.stdout.readline()
        time.sleep(0.5)
        assert not Path(uri).exists()  # nothing yet: the first timed copy is an hour away
        keeper.send_signal(signal.SIGTERM)  # what a shutting-down head sends its processes
        out, _ = keeper.communicate(timeout=60)
    finally:
        keeper.kill()
    assert keeper.returncode == 0 and "stopped after 1 copies" in out
    db.unlink()
    restore(uri, db)
    assert _history(db, run_id) == [(1, 0.6), (2, 0.7), (3, 0.8)]
