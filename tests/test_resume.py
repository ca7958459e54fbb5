"""A search survives its driver being killed: `tune-lab resume` finishes it, nothing twice."""
from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import start_killable_search
from tune_lab.cli import main

EPOCHS = 25
SEARCH = f"""
description: four trials, one at a time, long enough to be killed in the middle
lab: mlp
metric: val_acc
fixed: {{epochs: {EPOCHS}, batch_size: 32, optimizer: sgd, momentum: 0.9}}
params:
  lr: {{grid: [0.05, 0.02, 0.01, 0.005]}}
search: grid
scheduler: fifo
"""


def epochs_reported(trial_dir: Path) -> int:
    result = trial_dir / "result.json"
    return len(result.read_text().splitlines()) if result.is_file() else 0


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_interrupted_search_resumes_without_rerunning_finished_trials(ray_session, tiny_mnist, tmp_path, how, capsys):
    space = tmp_path / "long.yaml"
    space.write_text(textwrap.dedent(SEARCH))
    folder = tmp_path / "results" / "killed"
    driver = start_killable_search(space, tiny_mnist, tmp_path / "results", "killed")
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # kill once one trial is done and the next is under way
            trials = sorted(folder.glob("run_trial_*"))
            if trials and epochs_reported(trials[0]) == EPOCHS and any(0 < epochs_reported(t) < EPOCHS for t in trials[1:]):
                break
            assert driver.poll() is None, "the search ended before it could be killed"
            time.sleep(0.2)
        else:
            raise TimeoutError("the search never got to its second trial")
        os.kill(driver.pid, how)
    finally:
        _, err = driver.communicate(timeout=120)
        try:  # and the Ray it started: nothing of the killed search may keep running
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if how == signal.SIGINT:  # stopped cleanly: said so, and how to go on
        assert driver.returncode == 130, err[-2000:]
        assert f"tune-lab resume {folder}" in err
    finished_before = {t.name: (t / "result.json").read_text() for t in folder.glob("run_trial_*") if epochs_reported(t) == EPOCHS}
    assert len(finished_before) == 1
    if how == signal.SIGKILL:
        assert not (folder / "summary.json").exists()
        # the worst moment to be killed: during Ray's copy of its state, which it truncates first
        newest_state = max(folder.glob("experiment_state-*.json"))
        newest_state.write_bytes(b"")
    else:  # a partial summary: the unfinished trials are marked, the finished one kept
        partial = json.loads((folder / "summary.json").read_text())
        assert sum(t["status"] == "completed" for t in partial["trials"]) >= 1

    assert main(["resume", str(folder)]) == 0
    if how == signal.SIGKILL:
        assert f"which was cut off ({newest_state.name}); restored the last whole copy" in capsys.readouterr().err

    summary = json.loads((folder / "summary.json").read_text())
    assert len(summary["trials"]) == 4
    assert all(t["status"] == "completed" and t["epochs_run"] == EPOCHS for t in summary["trials"])
    # one point per epoch, though a resumed trial reports again the epochs after its checkpoint
    assert all(t["history"]["training_iteration"] == list(range(1, EPOCHS + 1)) for t in summary["trials"])
    for name, text in finished_before.items():  # the finished trial was not run again
        assert (folder / name / "result.json").read_text() == text

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    parent = client.get_run(summary["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4  # a resumed trial keeps its run: no duplicates
    assert {c.info.run_id for c in children} == {t["mlflow_run_id"] for t in summary["trials"]}
    for child in children:
        steps = {m.step for m in client.get_metric_history(child.info.run_id, "val_acc")}
        assert steps == set(range(1, EPOCHS + 1))
        assert child.info.status == "FINISHED" and child.data.tags["tune_lab.status"] == "completed"
    assert (folder / "report" / "report.html").is_file()
