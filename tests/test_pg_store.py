"""The class's MLflow store on PostgreSQL: a real SQLite store of a real search copied into a real
PostgreSQL server (started here on loopback, in its own data directory) with
`python -m tune_lab.store_backup migrate`, counts equal, every run, param, tag and metric history read back
through MLflow; and the head's PostgreSQL store kept in the bucket and restored (pg_dump / pg_restore)."""
from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.local_servers import postgres, postgres_missing
from tune_lab.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(postgres_missing() is not None, reason=str(postgres_missing()))


def _migrate(db: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tune_lab.store_backup", "migrate", str(db), uri],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_real_store_moves_to_postgresql_with_every_run_param_and_metric(ray_session, tiny_mnist, tmp_path):
    root = tmp_path / "results"
    assert main(["mlp", "--search", "optimizer", "--set", "epochs=2", "--data-dir", str(tiny_mnist),
                 "--storage", str(root), "--experiment", "before"]) == 0
    db = root / "mlflow.db"
    with sqlite3.connect(db) as lite:
        counted = {name: lite.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in ("runs", "params", "metrics")}
    assert counted["runs"] == 4 and counted["metrics"] > 0  # the parent and three trials, per-epoch metrics
    from mlflow.tracking import MlflowClient

    before = MlflowClient(tracking_uri=f"sqlite:///{db}")
    with postgres() as pg:
        plain = pg.uri.replace("postgresql+psycopg2://", "postgresql://")  # as an admin writes it
        done = _migrate(db, plain)
        assert done.returncode == 0, done.stderr[-2000:]
        said = {name: int(n) for n, name in re.findall(r"(\d+) (\w+)", done.stdout.split(":", 2)[-1])}
        assert {name: said[name] for name in counted} == counted, done.stdout
        again = _migrate(db, plain)  # a second copy would double every run: refused in one line
        assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
        assert "already has runs" in again.stderr

        after = MlflowClient(tracking_uri=pg.uri)  # MLflow's own store on it, as its server opens it
        experiment = after.get_experiment_by_name("mlp")
        runs = {r.info.run_id: r for r in after.search_runs([experiment.experiment_id])}
        old = {r.info.run_id: r for r in before.search_runs([before.get_experiment_by_name("mlp").experiment_id])}
        assert set(runs) == set(old)
        for run_id, run in old.items():
            assert runs[run_id].data.params == run.data.params and runs[run_id].data.tags == run.data.tags
            for key in run.data.metrics:
                history = [(m.step, m.value) for m in before.get_metric_history(run_id, key)]
                assert sorted((m.step, m.value) for m in after.get_metric_history(run_id, key)) == sorted(history)
        new = after.create_experiment("after-the-move")  # PostgreSQL's ids go on past the copied ones
        assert int(new) > max(int(e.experiment_id) for e in before.search_experiments())


def test_migrate_refuses_what_it_cannot_read_in_one_line(tmp_path):
    done = _migrate(tmp_path / "none.db", "postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 2 and done.stderr.strip() == f"tune-lab: migrate: no SQLite store at {tmp_path / 'none.db'}"
    (tmp_path / "store.db").write_bytes(b"")
    done = _migrate(tmp_path / "store.db", "postgresql://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "127.0.0.1:1" in done.stderr


def test_a_postgresql_store_goes_to_the_bucket_and_comes_back_on_the_next_head(tmp_path):
    """cluster.yaml's head keeps its PostgreSQL store in the bucket (pg_dump) and the next `ray up`
    restores it into the new head's empty database (pg_restore); a live store is never replaced,
    and a copy that cannot be restored leaves nothing behind."""
    from mlflow.tracking import MlflowClient

    from tune_lab.store_backup import _pg_runs, backup, restore_postgres

    copy = f"file://{tmp_path / 'bucket' / 'mlflow.pgdump'}"
    with postgres() as pg:
        client = MlflowClient(tracking_uri=pg.uri)
        run = client.create_run(client.create_experiment("mlp"), run_name="survivor").info.run_id
        for step in (1, 2, 3):
            client.log_metric(run, "val_acc", step / 10, step=step)
        backup(pg.uri, copy)
        new_head = pg.database("next_head")  # the next head's database, before MLflow's server starts
        assert restore_postgres(copy, new_head).startswith("restored")
        back = MlflowClient(tracking_uri=new_head)
        assert [(m.step, m.value) for m in back.get_metric_history(run, "val_acc")] == [(1, 0.1), (2, 0.2), (3, 0.3)]
        assert "kept, not restored" in restore_postgres(copy, new_head) and _pg_runs(new_head) == 1
        (tmp_path / "bucket" / "mlflow.pgdump").write_bytes(b"not a dump")
        broken = pg.database("broken_copy")
        with pytest.raises(RuntimeError, match="could not be restored"):
            restore_postgres(copy, broken)
        assert _pg_runs(broken) is None
