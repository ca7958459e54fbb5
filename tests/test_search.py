"""Real Ray Tune searches on tiny data: one trial's metrics, and a whole search end to end."""
from __future__ import annotations

import json
import os

import pytest
import torch

from tests.conftest import run_search
from trainables.data import load_images
from labspec.hparams import CLASSIFIER_METRICS
from trainables.loop import CHECKPOINT_FILE, run_trial
from tune_lab.cli import main

EVERY_METRIC = (*CLASSIFIER_METRICS, "epoch_time_s", "samples_per_s")


def test_one_trial_reports_every_metric_each_epoch(ray_session, tiny_mnist, tmp_path):
    from ray import tune

    data = load_images("mnist", tiny_mnist)
    trainable = tune.with_parameters(run_trial, lab="mlp", data=data, metric="val_acc", mode="max")
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"epochs": 2, "batch_size": 64, "lr": 0.01},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="one", verbose=0),
    )
    result = tuner.fit()[0]
    assert result.error is None
    history = result.metrics_dataframe
    assert list(history["training_iteration"]) == [1, 2]
    for metric in EVERY_METRIC:
        assert metric in history and history[metric].notna().all(), metric
    for metric in ("train_acc", "val_acc", "test_acc"):
        assert 0.0 <= history[metric].min() and history[metric].max() <= 1.0
    assert result.metrics["val_acc"] > 0.5
    with result.checkpoint.as_directory() as folder:
        saved = torch.load(os.path.join(folder, CHECKPOINT_FILE), weights_only=True)
    assert saved["lab"] == "mlp" and saved["data"]["name"] == "mnist"
    assert saved["metrics"]["val_acc"] == pytest.approx(history["val_acc"].max())


ASHA_SEARCH = """
description: good and hopeless learning rates, one trial at a time
lab: mlp
metric: val_acc
mode: max
fixed: {epochs: 4, batch_size: 64, optimizer: sgd, momentum: 0.9, lr_schedule: constant}
params:
  lr: {grid: [0.05, 1.0e-7, 2.0e-7, 3.0e-7]}
search: grid
scheduler: {asha: {grace_period: 1, reduction_factor: 2}}
"""


def test_search_end_to_end_with_asha_and_mlflow(ray_session, tiny_mnist, tmp_path, capsys):
    results = tmp_path / "results"
    summary = run_search("mlp", ASHA_SEARCH, tiny_mnist, results, "e2e", "--max-concurrent", "1", "--seed", "3",
                         search="asha")
    out = capsys.readouterr().out
    statuses = [t["status"] for t in summary["trials"]]
    assert len(statuses) == 4 and statuses.count("errored") == 0
    assert "stopped early" in statuses, statuses
    assert summary["best"]["setting"] == {"lr": 0.05}
    assert summary["best"]["metrics"]["val_acc"] > 0.8
    assert all(t["config"]["seed"] == 3 for t in summary["trials"])
    # the table printed at the end: one row per setting, with its status
    assert "lr=0.05" in out and "stopped early" in out and "Best configuration" in out
    # where the driver's seconds went, phase by phase (benchmarks/overhead.py reads them)
    phases = summary["driver_s"]
    assert list(phases)[-1] == "report_and_mlflow" and {
        "ray_start", "data", "mlflow_imports", "mlflow_store", "imports", "setup", "trials", "summary"} <= set(phases)
    assert all(seconds >= 0 for seconds in phases.values()) and phases["trials"] > phases["setup"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    assert summary["mlflow"]["tracking_uri"] == f"sqlite:///{results / 'mlflow.db'}"
    parent = client.get_run(summary["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["tune_lab.search"] == "asha"
    children = client.search_runs(
        [summary["mlflow"]["experiment_id"]], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 4
    for trial in summary["trials"]:
        run = client.get_run(trial["mlflow_run_id"])
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["tune_lab.status"] == trial["status"]
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert len(history) == trial["epochs_run"]


def test_a_search_leaves_no_tracking_uri_behind(ray_session, tiny_mnist, tmp_path, monkeypatch):
    """Two searches in one process: the second must log to its own store, not the first's."""
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["mlp", "--search", "optimizer", "--set", "epochs=1", "--set", "optimizer=adam", "--data-dir", str(tiny_mnist)]
    assert main([*args, "--storage", str(tmp_path / "first")]) == 0
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert main([*args, "--storage", str(tmp_path / "second"), "--experiment", "second"]) == 0
    summary = json.loads((tmp_path / "second" / "second" / "summary.json").read_text())
    assert summary["mlflow"]["tracking_uri"] == f"sqlite:///{tmp_path / 'second' / 'mlflow.db'}"


def test_trial_processes_wait_passively_for_openmp_work(ray_session):
    """Trials started by tune-lab's local Ray inherit OMP_WAIT_POLICY=PASSIVE (see runner.TRIAL_ENV)."""
    from tune_lab.runner import TRIAL_ENV

    @ray_session.remote(num_cpus=1)
    def trial_environment() -> dict:
        import os

        return {key: os.environ.get(key) for key in TRIAL_ENV}

    assert ray_session.get(trial_environment.remote()) == TRIAL_ENV
