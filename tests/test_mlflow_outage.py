"""The tracking server blinks: a real `mlflow server` (on PostgreSQL where this machine has it, else on
SQLite) is stopped for 30 s in the middle of a search and started again on the same port. The driver
keeps each epoch while it is away (one line on stderr) and sends it when it answers: afterwards every
trial's run has every epoch exactly once, as many as summary.json says it ran. Away longer than the
limit ($TUNE_LAB_MLFLOW_OUTAGE_S), the search stops in one line and `tune-lab resume` completes it,
again with every epoch once."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from benchmarks.local_servers import MlflowServer, postgres, postgres_missing

ROOT = Path(__file__).resolve().parents[1]
SEARCH = """
description: a search the tracking server blinks under
lab: mlp
fixed: {{epochs: {epochs}, batch_size: 64}}
params:
  lr: {{grid: [0.001, 0.01]}}
search: grid
scheduler: fifo
"""
OUTAGE_S = 30


def _epochs_in_mlflow(uri: str, run_id: str, metric: str) -> list[int]:
    from mlflow.tracking import MlflowClient

    return sorted(p.step for p in MlflowClient(tracking_uri=uri).get_metric_history(run_id, metric))


def _logged_epochs(uri: str) -> int:
    """Epochs the server has of the search so far (0 while it has no run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("mlp")
    if experiment is None:
        return 0
    return sum(int(r.data.metrics.get("training_iteration", 0)) for r in client.search_runs([experiment.experiment_id]))


def _search(tmp_path: Path, data: Path, uri: str, epochs: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    space = tmp_path / "blink.yaml"
    space.write_text(textwrap.dedent(SEARCH.format(epochs=epochs)))
    command = [sys.executable, "-m", "tune_lab", "mlp", "--search", str(space), "--data-dir", str(data),
               "--storage", str(tmp_path / "results"), "--tracking-uri", uri, "--experiment", "blink"]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "RAY_AIR_NEW_OUTPUT": "0", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _backend(tmp_path: Path) -> Iterator[str]:
    """The server's store: a PostgreSQL of the test's own where this machine has one (a class's server), else SQLite."""
    if postgres_missing():
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    with postgres() as pg:
        yield pg.uri


def test_a_30_s_outage_mid_search_loses_and_repeats_no_epoch(tiny_mnist, tmp_path):
    # A trial that ends while the server is away waits for it (its run is closed with every epoch), so the
    # search is still running when the server comes back however fast this machine is.
    epochs = 12
    with _backend(tmp_path) as backend:
        server = MlflowServer(backend, tmp_path / "artifacts").start()
        try:
            search = _search(tmp_path, tiny_mnist, server.url, epochs)
            deadline = time.time() + 240
            while _logged_epochs(server.url) < 3:  # into the search: its runs have epochs
                assert search.poll() is None, search.stderr.read()[-3000:]
                assert time.time() < deadline, "the search logged no epoch in 240 s"
                time.sleep(0.5)
            server.stop()
            stopped_at = time.time()
            time.sleep(OUTAGE_S)
            assert search.poll() is None, "the search ended while the server was away: no outage mid-search"
            server.start()
            out, err = search.communicate(timeout=600)
            assert search.returncode == 0, err[-3000:]
            assert time.time() - stopped_at > OUTAGE_S
            away = [line for line in err.splitlines() if "is not answering" in line]
            assert len(away) == 1 and server.url in away[0], err[-3000:]  # one line while it was away
            (back,) = [line for line in err.splitlines() if "answers again" in line]
            assert int(back.split(" the ")[1].split()[0]) > 0, back  # epochs were kept while it was away
            assert "Traceback" not in err
            _every_epoch_once(tmp_path, server.url, epochs)
        finally:
            server.stop()


def _every_epoch_once(tmp_path: Path, uri: str, epochs: int) -> None:
    """summary.json's epochs of every trial, each in its MLflow run exactly once."""
    summary = json.loads((tmp_path / "results" / "blink" / "summary.json").read_text())
    assert summary["complete"] and len(summary["trials"]) == 2
    for trial in summary["trials"]:
        ran = trial["epochs_run"]
        assert ran == epochs and len(trial["history"]["val_acc"]) == ran
        for metric in ("training_iteration", "val_acc", "train_loss"):  # every epoch, once
            assert _epochs_in_mlflow(uri, trial["mlflow_run_id"], metric) == list(range(1, ran + 1))


@pytest.mark.skipif(not os.environ.get("TUNE_LAB_LONG_TESTS"), reason="a benchmark-length test (~3 min on 2 cores): "
                    "set TUNE_LAB_LONG_TESTS=1 to run it")
def test_away_past_the_limit_the_search_stops_in_one_line_and_resume_completes_it(tiny_mnist, tmp_path):
    epochs = 25
    with _backend(tmp_path) as backend:
        server = MlflowServer(backend, tmp_path / "artifacts").start()
        try:
            search = _search(tmp_path, tiny_mnist, server.url, epochs, env={"TUNE_LAB_MLFLOW_OUTAGE_S": "6"})
            deadline = time.time() + 240
            while _logged_epochs(server.url) < 4:
                assert search.poll() is None, search.stderr.read()[-3000:]
                assert time.time() < deadline, "the search logged no epoch in 240 s"
                time.sleep(0.5)
            server.stop()
            out, err = search.communicate(timeout=300)
            assert search.returncode == 130, err[-3000:]
            stopped = [line for line in err.splitlines() if "has not answered for 6 s" in line]
            assert len(stopped) == 1 and "tune-lab resume" in stopped[0] and "Traceback" not in err, err[-3000:]
            server.start()
            done = subprocess.run([sys.executable, "-m", "tune_lab", "resume", "blink", "--storage",
                                   str(tmp_path / "results")], cwd=ROOT, capture_output=True, text=True, timeout=600,
                                  env={**os.environ, "RAY_AIR_NEW_OUTPUT": "0"})
            assert done.returncode == 0, done.stderr[-3000:]
            _every_epoch_once(tmp_path, server.url, epochs)
        finally:
            server.stop()
