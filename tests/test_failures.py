"""Nothing lost: a trial that raises or diverges is recorded as failed, and the search goes on."""
from __future__ import annotations

import json
import textwrap

import tests.flaky_lab  # noqa: F401  (registers the "flaky" lab)
from tune_lab.cli import EXIT_TRIALS_FAILED, main

SEARCH = """
description: four trials, one raises, one diverges
lab: flaky
metric: val_acc
fixed: {epochs: 3, batch_size: 64, optimizer: sgd, momentum: 0.9, lr_schedule: constant}
params:
  lr: {grid: [0.05, 0.02, 100.0, 0.01]}
  fail_at_epoch: {grid: [0, 2]}
search: grid
"""


def test_one_trial_raises_one_diverges_the_others_finish(ray_session, tiny_mnist, tmp_path, capsys):
    space = tmp_path / "flaky.yaml"
    # 8 trials: lr=100 diverges (NaN) whatever fail_at_epoch; fail_at_epoch=2 raises in epoch 2
    space.write_text(textwrap.dedent(SEARCH))
    code = main(["flaky", "--search", str(space), "--data-dir", str(tiny_mnist), "--storage", str(tmp_path),
                 "--experiment", "flaky"])
    captured = capsys.readouterr()
    assert code == EXIT_TRIALS_FAILED
    assert "trials failed" in captured.err

    summary = json.loads((tmp_path / "flaky" / "summary.json").read_text())
    by_setting = {(t["config"]["lr"], t["config"]["fail_at_epoch"]): t for t in summary["trials"]}
    assert len(by_setting) == 8
    for (lr, fail_at), trial in by_setting.items():
        if lr == 100.0:
            assert trial["status"] == "errored"
            assert "FloatingPointError" in trial["error"] and "became nan at epoch 1" in trial["error"]
        elif fail_at == 2:
            assert trial["status"] == "errored" and trial["epochs_run"] == 1
            assert "RuntimeError" in trial["error"] and "failing in epoch 2" in trial["error"]
        else:
            assert trial["status"] == "completed" and trial["epochs_run"] == 3
    assert summary["best"]["config"]["fail_at_epoch"] == 0 and summary["best"]["config"]["lr"] != 100.0

    report = (tmp_path / "flaky" / "report" / "report.md").read_text()
    assert report.count("failed: RuntimeError") == 3 and report.count("failed: FloatingPointError") == 2
    assert "failed:" in captured.out  # the printed table says it too

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    for trial in summary["trials"]:
        run = client.get_run(trial["mlflow_run_id"])
        assert run.data.tags["tune_lab.status"] == trial["status"]
        if trial["status"] == "errored":
            assert run.info.status == "FAILED"
            assert run.data.tags["tune_lab.error"].split(":")[0] in trial["error"]
    assert client.get_run(summary["mlflow"]["parent_run_id"]).info.status == "FAILED"
