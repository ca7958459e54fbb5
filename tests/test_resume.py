"""A search survives its driver being killed: `tune-lab resume` finishes it, nothing twice."""
from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from tests.conftest import kill_when, start_killable_search
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

    def second_under_way() -> bool:  # one trial done and the next under way
        trials = sorted(folder.glob("run_trial_*"))
        return bool(trials) and epochs_reported(trials[0]) == EPOCHS and any(0 < epochs_reported(t) < EPOCHS for t in trials[1:])

    err = kill_when(driver, second_under_way, "the search got to its second trial", timeout=240, every=0.2, how=how)
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


# Issue 19: ASHA's decisions before a kill stand after the resume. One trial at a time, in grid order:
# lr 0.0005 (slow: first, so it runs to the end), lr 0.004 (100% from epoch 1: its one checkpoint is
# epoch 1's, and it passes every rung against the first), lr 0.002 (epoch 1 between the other
# two: kept at rung 1 against both; Ray's ASHA rebuilt empty by the resume compares it with the
# second trial's epoch-2 value alone and stops it).
ASHA_EPOCHS = 30  # epochs of ~0.1 s: the second trial's are the time to kill it in
ASHA_SEARCH = f"""
description: three trials, one at a time, ASHA at epochs 1, 3, 9 and 27
lab: mlp
metric: val_acc
fixed: {{epochs: {ASHA_EPOCHS}, batch_size: 32, optimizer: sgd, momentum: 0.0}}
params:
  lr: {{grid: [0.0005, 0.004, 0.002]}}
search: grid
scheduler: {{asha: {{grace_period: 1, reduction_factor: 3}}}}
"""


def _latest_per_step(client, run_id: str, metric: str) -> dict[int, float]:
    """An MLflow run's history of `metric`, the later value where an epoch was logged twice (as summary.json)."""
    return {p.step: p.value for p in sorted(client.get_metric_history(run_id, metric), key=lambda p: p.timestamp)}


def _epochs_logged(client, trial_suffix: str) -> int:
    """Epochs MLflow has of the trial whose id ends with `trial_suffix`: the driver logs each as it comes
    (Ray's own result.json reaches the results folder only when Ray syncs it there)."""
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`tune_lab.trial_id` LIKE '%{trial_suffix}'")
    return len(client.get_metric_history(runs[0].info.run_id, "val_acc")) if runs else 0


def test_asha_decisions_stand_after_a_kill(ray_session, tiny_mnist, tmp_path):
    from mlflow.tracking import MlflowClient

    from tests.conftest import run_search
    from trainables.loop import load_checkpoint

    space = tmp_path / "asha.yaml"
    space.write_text(textwrap.dedent(ASHA_SEARCH))
    folder = tmp_path / "results" / "killed"
    driver = start_killable_search(space, tiny_mnist, tmp_path / "results", "killed")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    logged = [0]

    def second_past_rung_3() -> bool:  # and past its checkpoint (epoch 1)
        if not (folder / "search.json").is_file():  # before it, the driver may still be making its MLflow store
            return False
        logged[0] = _epochs_logged(client, "_00001")
        return ASHA_EPOCHS - 2 > logged[0] >= 4

    kill_when(driver, second_past_rung_3, "the second trial got past its third epoch", timeout=240, every=0.02)
    killed_at = logged[0]
    second = sorted(folder.glob("run_trial_*"))[1]
    saved = [load_checkpoint(c)["epoch"] for c in second.glob("checkpoint_*")]
    assert max(saved, default=0) < killed_at  # the case of the issue: reported past its last checkpoint
    assert (folder / "rungs.state").is_file()

    assert main(["resume", str(folder)]) == 0
    resumed = json.loads((folder / "summary.json").read_text())
    # the same search, never killed
    whole = run_search("mlp", ASHA_SEARCH, tiny_mnist, tmp_path / "whole", "whole", "--max-concurrent", "1")

    def outcome(summary: dict) -> list[tuple]:
        return [(t["config"]["lr"], t["status"], t["epochs_run"]) for t in summary["trials"]]

    assert outcome(resumed) == outcome(whole)
    assert outcome(whole)[2] == (0.002, "completed", ASHA_EPOCHS)  # kept at rung 1: what a lost rung table got wrong
    for again, once in zip(resumed["trials"], whole["trials"]):  # the epochs run again are the same epochs
        assert again["history"]["val_acc"] == pytest.approx(once["history"]["val_acc"], abs=1e-6)

    client = MlflowClient(tracking_uri=resumed["mlflow"]["tracking_uri"])
    for trial in resumed["trials"]:  # summary.json and MLflow agree, epoch for epoch
        for metric in ("val_acc", "train_loss"):
            logged = _latest_per_step(client, trial["mlflow_run_id"], metric)
            assert sorted(logged) == trial["history"]["training_iteration"]
            assert [logged[e] for e in sorted(logged)] == pytest.approx(trial["history"][metric], rel=1e-9)
        assert client.get_run(trial["mlflow_run_id"]).data.tags["tune_lab.status"] == trial["status"]
        # an epoch run again with the same result is not logged twice (tune_lab.tracking.TrialRuns)
        assert len(client.get_metric_history(trial["mlflow_run_id"], "val_acc")) == trial["epochs_run"]


def test_a_trial_whose_result_files_a_kill_lost_is_read_from_its_mlflow_run():
    """Ray copies a trial's result files into the results folder now and then: a trial stopped at its rung
    before the kill, and not run again, can come back with none (seen in the 1,000-trial search)."""
    from types import SimpleNamespace

    import pandas as pd

    from tune_lab.results import summarise

    def result(trial_id: str, epochs: int, last: int):
        history = pd.DataFrame({"training_iteration": list(range(1, epochs + 1)), "val_acc": [0.5] * epochs})
        return SimpleNamespace(metrics={"trial_id": trial_id, "training_iteration": last}, metrics_dataframe=history,
                               config={"epochs": 2, "lr": 0.1}, error=None, path=f"/x/{trial_id}", checkpoint=None)

    from_mlflow = pd.DataFrame({"training_iteration": [1], "val_acc": [0.75]})
    asked = []
    header = {"metric": "val_acc", "mode": "max", "metrics": ["val_acc"], "varied": ["lr"]}
    summary = summarise([result("a", 2, 2), result("b", 0, 1)], header, tracking={}, trial_runs={"a": "run-a", "b": "run-b"},
                        run_history=lambda run_id: asked.append(run_id) or from_mlflow)
    assert asked == ["run-b"]  # only where Ray's own history falls short
    assert [(t["trial_id"], t["status"], t["epochs_run"]) for t in summary["trials"]] == [
        ("a", "completed", 2), ("b", "stopped early", 1)]
    assert summary["trials"][1]["history"]["val_acc"] == [0.75]
