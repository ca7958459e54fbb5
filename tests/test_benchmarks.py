"""The benchmark harness keeps working: its smallest section runs and writes the fields the docs quote."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_cli_benchmark_writes_json_and_markdown(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "cli", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "quick.json").read_text())
    assert report["quick"] is True and report["reps"] >= 2
    for key in ("cpu", "cpus", "torch", "device", "load_average_start"):
        assert key in report["machine"]
    (section,) = report["sections"]
    assert section["name"] == "cli" and "error" not in section
    assert {row["case"] for row in section["cases"]} == {"help", "list", "bad_file"}
    for row in section["cases"]:
        assert row["median_s"] > 0 and len(row["reps_s"]) == report["reps"]
    assert {t["what"] for t in section["targets"]} == {
        "`tune-lab --help` seconds", "`tune-lab list` seconds", "`tune-lab mlp --search BAD_FILE` seconds"}
    assert all(isinstance(t["met"], bool) for t in section["targets"])
    assert "gpu" in report["not_benchmarked"]
    markdown = (tmp_path / "quick.md").read_text()
    assert "## Targets" in markdown and "| help |" in markdown
    assert (tmp_path / "latest.json").is_file()


def test_overhead_figures_take_the_training_out():
    """Issue 19's derived figures: what 90 extra trials add beyond their share of the cores'
    training, and each run's fixed overhead against its target, as the table prints them."""
    from benchmarks.overhead import per_trial, table

    small = {"tree": "after", "case": "trials-10", "wall_s": 30.0, "trials": 10, "training_s": 5.0, "slots": 2}
    large = {"tree": "after", "case": "trials-100", "wall_s": 75.0, "trials": 100, "training_s": 50.0, "slots": 2}
    assert per_trial(small, large) == (75.0 - 30.0 - (50.0 - 5.0) / 2) / 90  # 0.25 s
    main = {"tree": "after", "case": "main", "wall_s": 40.0, "fixed_overhead_s": 14.0,
            "timeline": {"parent_run_s": 4.0, "first_trial_s": 7.0, "last_trial_end_s": 37.0}}
    printed = table([main, small, large])
    assert "| after | main | 1 | 40.0 s | 14.0 s (target <= 15) |" in printed
    assert "Per-trial overhead, after: 0.250 s" in printed and "first_trial_s 7.00" in printed


def test_rung_signal_figures_rank_each_signal_against_the_end():
    """benchmarks/rung_signals.py: a signal that orders the trials as their 20-epoch best does gets rho 1 and keeps the
    best of all at every rung; one that orders them backwards gets rho -1 and keeps the worst when it keeps one."""
    from benchmarks.rung_signals import signal_figures

    # Three trials: accuracy early says c > b > a, the end says a > b > c; the loss says a < b < c (a best) throughout.
    curves = [{"lr": lr, "val_acc": [early] * 9 + [end] * 11, "val_loss": [loss] * 20}
              for lr, early, end, loss in ((1e-3, 0.90, 0.99, 0.1), (2e-3, 0.91, 0.98, 0.2), (3e-3, 0.92, 0.97, 0.3))]
    figures = signal_figures(curves, epochs=(1, 9), picks=((9, 1), (9, 2)))
    assert figures["trials"] == 3 and figures["best_of_all"] == 0.99
    assert figures["spearman"]["val_loss"] == {1: 1.0, 9: 1.0}
    assert figures["spearman"]["val_acc"] == {1: -1.0, 9: -1.0}
    assert figures["kept_best"]["val_loss"] == {"9:1": 0.99, "9:2": 0.99}
    assert figures["kept_best"]["val_acc"] == {"9:1": 0.97, "9:2": 0.98}


def test_the_early_stopping_acceptance_counts_each_line_per_seed_and_pairs_the_averages():
    """benchmarks/early_stopping.py --summarize: per kind of peer, the seeds meeting each of issue 21's lines
    (a later run of a side and seed replacing an earlier one) and the paired means over the seeds."""
    from benchmarks.early_stopping import acceptance, acceptance_text

    def row(side, seed, wall, epochs, val):
        return {"side": side, "seed": seed, "wall_s": wall, "trial_epochs": epochs, "best_val_acc": val, "best_test_acc": val}

    ours = "tune-lab (promotion)"
    rows = [row("optuna", 0, 100, 80, 0.984), row(ours, 0, 90, 70, 0.985),     # all three met
            row("optuna", 1, 50, 40, 0.983), row(ours, 1, 80, 60, 0.980),      # none: 60 > 1.2 x 40
            row(ours, 2, 70, 60, 0.990), row("optuna", 2, 60, 60, 0.980),
            row(ours, 2, 55, 60, 0.990),                                         # rerun of seed 2: this one counts
            row("optuna, plain recipe", 0, 80, 70, 0.975), row("optuna", 3, 1, 1, 0.5)]  # seed 3: no tune-lab row
    verdicts = acceptance(rows, ours)
    main = verdicts["optuna"]
    assert main["seeds"] == [0, 1, 2]
    assert main["met"] == {"wall no more": 2, "trial-epochs within 1.2x": 2, "best val at least": 2} and main["all three"] == 2
    assert main["figures"]["wall_s"]["difference"] == ((90 - 100) + (80 - 50) + (55 - 60)) / 3
    assert verdicts["optuna, plain recipe"]["seeds"] == [0] and verdicts["optuna, plain recipe"]["all three"] == 0  # 90 s > 80 s
    assert "against optuna (3 seeds: 0, 1, 2): wall no more 2 of 3" in acceptance_text(verdicts)


def test_cores_reads_busy_time_from_proc_stat():
    """benchmarks/cores.py's CPU accounting: a third of a second of spinning shows as busy time, and busy time
    does not exceed the machine's total (but for a tick: Linux's iowait counter may step back)."""
    import time

    from benchmarks.cores import cpu_times

    busy0, total0 = cpu_times()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    busy1, total1 = cpu_times()
    assert busy1 - busy0 >= 0.1 and total1 - total0 + 0.05 >= busy1 - busy0
