"""Real MNIST (skipped without $TUNE_LAB_DATA): the corrected MLP through a real search."""
from __future__ import annotations

import json

from tests.conftest import real_data_root, requires_real_mnist
from tune_lab.cli import main


@requires_real_mnist
def test_corrected_mlp_reaches_97_percent_validation_in_two_epochs(ray_session, tmp_path):
    code = main([
        "mlp", "--search", "optimizer", "--set", "epochs=2", "--set", "optimizer=adam",
        "--data-dir", str(real_data_root()), "--storage", str(tmp_path), "--experiment", "real",
    ])
    assert code == 0
    summary = json.loads((tmp_path / "real" / "summary.json").read_text())
    assert summary["dataset"] == "mnist"
    (trial,) = summary["trials"]
    assert trial["epochs_run"] == 2 and trial["config"]["faithful"] is False
    assert trial["best"]["val_acc"] >= 0.97, trial["best"]
