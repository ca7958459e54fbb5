"""A generative trial's progress grids (samples/epoch_NNN.png) reach its own folder in the results,
whichever Ray actor ran it.

Lab 5's reproduce (cgan at 10/30/50/70 epochs, two trials at a time) lost the digit grids of its
third and fourth trials: with `reuse_actors`, Ray hands a finished trial's actor the next trial,
and `tune.get_context().get_trial_dir()` then names the trial's local working directory
(working_dirs/, never copied to the results) instead of the driver's staging folder it names for
a fresh actor (driver_artifacts/, which the driver copies). The test makes Ray reuse actors
(four trials, two at a time, on two CPUs) and checks that it did, then looks in every trial's folder.
"""
from __future__ import annotations

import json

from tests.conftest import run_search
from trainables.generative import last_grids

FOUR_TRIALS = """
description: four two-epoch cGAN trials, two at a time, so that trials 3 and 4 run on reused actors
lab: cgan
metric: cond_acc
mode: max
fixed: {epochs: 2, batch_size: 64, quality_samples: 10, width: 4, latent_dim: 8, sample_every: 1}
params:
  lr: {grid: [0.0005, 0.001, 0.002, 0.004]}
search: grid
scheduler: fifo
"""


def test_every_trial_keeps_its_grids_when_ray_reuses_actors(ray_session, tiny_mnist, tmp_path):
    root = tmp_path / "results"
    summary = run_search("cgan", FOUR_TRIALS, tiny_mnist, root, "grids", "--subset", "128", "--max-concurrent", "2")
    assert [t["status"] for t in summary["trials"]] == ["completed"] * 4
    trial_dirs = sorted((root / "grids").glob("run_trial_*"))
    assert len(trial_dirs) == 4
    pids = {json.loads(line)["pid"] for d in trial_dirs for line in (d / "result.json").read_text().splitlines()}
    assert len(pids) < 4, "Ray did not reuse an actor: this test would not see the bug"
    for trial_dir in trial_dirs:
        grids = sorted(p.name for p in (trial_dir / "samples").glob("epoch_*.png"))
        assert grids == ["epoch_001.png", "epoch_002.png"], f"{trial_dir.name}: {grids}"
        assert all((trial_dir / "samples" / g).read_bytes().startswith(b"\x89PNG") for g in grids)
    report = root / "grids" / "report"  # the best trial's figures, and every trial's last grid beside the others'
    assert (report / "every_trial_grid.png").read_bytes().startswith(b"\x89PNG")
    assert "](every_trial_grid.png)" in (report / "report.md").read_text()
    titles = [title for title, _ in last_grids(root / "grids")]
    assert titles == [f"lr={lr} (epoch 2)" for lr in (0.0005, 0.001, 0.002, 0.004)]


def test_a_variants_grid_is_titled_by_its_name(tmp_path):
    """A sweep search's trial keeps its variant and values in params.json's `case`: the title is the variant's
    name (and what varies within a variant), not the optimizer settings the variant stands for."""
    cases = [{"variant": "faithful", "faithful": True, "optimizer": "sgd", "lr": 0.01},
             {"variant": "corrected", "faithful": False, "optimizer": "adam", "lr": 0.0002}]
    for i, case in enumerate(cases):
        for lr_scale in (1, 10):
            trial = tmp_path / f"run_trial_{i}_{lr_scale}"
            (trial / "samples").mkdir(parents=True)
            for epoch in (1, 3):
                (trial / "samples" / f"epoch_{epoch:03d}.png").write_bytes(b"png")
            case_here = {**case, "lr": case["lr"] * lr_scale}
            (trial / "params.json").write_text(json.dumps({"epochs": 3, "lr": 0.5, "seed": 0, "case": case_here}))
    (tmp_path / "summary.json").write_text("{}")  # not a trial folder
    titles = [title for title, _ in last_grids(tmp_path)]
    assert titles == ["corrected, lr=0.0002 (epoch 3)", "corrected, lr=0.002 (epoch 3)",
                      "faithful, lr=0.01 (epoch 3)", "faithful, lr=0.1 (epoch 3)"]
