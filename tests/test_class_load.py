"""A small class at once (benchmarks/class_load.py at its CI size): students submit a search each, together,
to one real token-protected Ray head whose admin caps each job at one trial at a time, logging to one real
MLflow server on PostgreSQL (SQLite where this machine has no PostgreSQL). Every job SUCCEEDED and listed
with its owner, every trial in MLflow once under its student with every epoch, every report written, and
no job ran more trials at once than the cap."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.local_servers import postgres_missing

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = 3


def _most_at_once(trials: list[dict]) -> int:
    """The most trials of one search that were running at the same moment (from summary.json's attempts)."""
    edges = sorted((t, +1 if kind == "start" else -1) for trial in trials for attempt in trial["attempts"]
                   for kind, t in (("start", attempt["start"]), ("end", attempt["end"])))
    running = most = 0
    for _, change in edges:
        running += change
        most = max(most, running)
    return most


def test_a_class_submits_together_and_every_trial_and_epoch_is_in_mlflow_once(tiny_mnist, tmp_path):
    backend = "sqlite" if postgres_missing() else "postgres"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.class_load", "--students", str(STUDENTS), "--subset", "300", "--epochs", "1",
         "--backends", backend, "--cpus", "2", "--cap", "1", "--data-dir", str(tiny_mnist), "--out", str(tmp_path),
         "--timeout", "400"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "class_load.json").read_text())
    entry = report["backends"][backend]
    assert done.returncode == 0, json.dumps(entry["students"], indent=1)[-3000:] + done.stderr[-2000:]
    assert entry["all_good"] and entry["jobs_listed"] == STUDENTS
    assert [s["status"] for s in entry["students"]] == ["SUCCEEDED"] * STUDENTS
    assert [s["owner_listed"] for s in entry["students"]] == [f"student{k:02d}" for k in range(1, STUDENTS + 1)]
    assert all(s["child_runs"] == s["trials"] == 3 for s in entry["students"])  # optimizer: sgd, adam, adadelta
    assert entry["write_latency"]["writes"] > 10
    for student in entry["students"]:  # the head's per-job cap held every job to one trial at a time
        summary = json.loads((tmp_path / backend / "results" / student["student"] / "summary.json").read_text())
        assert _most_at_once(summary["trials"]) == 1
        assert student["cap_said"]
