"""Issue 19, what a search costs beyond its training: fixed overhead, per-trial overhead, a thousand trials.

    python -m benchmarks.overhead [--before DIR] [--reps 3] [--cases main trials] [--thousand]

Each case runs `tune-lab` as a user does, a whole fresh process, and reads the training time
back from the search's summary.json (each epoch's `epoch_time_s`: training and evaluation):

- main: `tune-lab mlp --search optimizer`. Fixed overhead = wall time minus the longest
  trial's training time (target <= 15 s).
- trials: `tune-lab mlp --search lr --num-samples N --subset 1000 --set epochs=2` for N = 10
  and 100. Per-trial overhead = (wall_100 - wall_10 - (training_100 - training_10) / slots) / 90,
  where slots is how many trials ran at once: what each extra trial adds beyond its share of
  the cores' training (target <= 0.3 s).
- --thousand: the same search with 1,000 trials, once: wall time, trials in summary.json and
  in MLflow, disk left, and the time of `tune-lab report` of it read back from MLflow (< 60 s).

With `--before DIR` (a checkout of an earlier commit), every case also runs from DIR, the two
alternating (before, after, after, before, ...), so before and after are measured in the same
run on the same load. All searches share one results root whose MLflow store is made first,
untimed: a user's searches share one, and only the first pays for creating its tables.
Prints a Markdown table; one JSON line per run goes to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MAIN = ["mlp", "--search", "optimizer"]
TRIALS = ["mlp", "--search", "lr", "--subset", "1000", "--set", "epochs=2"]
FIXED_TARGET_S, PER_TRIAL_TARGET_S, REPORT_TARGET_S = 15.0, 0.3, 60.0


def run(tree: Path, args: list[str], data_dir: str) -> tuple[float, subprocess.CompletedProcess]:
    """`tune-lab ARGS` as a fresh process from the checkout `tree`: its wall seconds, and what it printed."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TUNE_LAB_DATA": data_dir}
    command = [sys.executable, "-m", "tune_lab", *args]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - began, done


def tune_lab(tree: Path, args: list[str], root: str, data_dir: str) -> tuple[float, dict[str, Any]]:
    """Run the search `tune-lab ARGS` from the checkout `tree`; its wall seconds and summary.json, with
    `timeline`: seconds from the process's start to its MLflow parent run, to its first trial's
    run (a trial process started), and to the end of its last trial's run; and `trial_runs_in_mlflow`."""
    from mlflow.tracking import MlflowClient

    experiment = f"x{time.time_ns()}"
    started = time.time()
    wall, _ = run(tree, [*args, "--storage", root, "--experiment", experiment], data_dir)
    summary = json.loads((Path(root) / experiment / "summary.json").read_text())
    tracking = summary["mlflow"]
    client = MlflowClient(tracking_uri=tracking["tracking_uri"])
    parent = client.get_run(tracking["parent_run_id"]).info
    runs = [r.info for r in client.search_runs([tracking["experiment_id"]], f"tags.mlflow.parentRunId = '{parent.run_id}'",
                                               max_results=50_000)]
    summary["trial_runs_in_mlflow"] = len(runs)
    summary["timeline"] = {"parent_run_s": round(parent.start_time / 1000 - started, 2),
                           "first_trial_s": round(min(r.start_time for r in runs) / 1000 - started, 2),
                           "last_trial_end_s": round(max(r.end_time for r in runs) / 1000 - started, 2)}
    return wall, summary


def training(summary: dict[str, Any]) -> list[float]:
    """Each trial's seconds of training and evaluation (its epochs' epoch_time_s)."""
    return [sum((t.get("history") or {}).get("epoch_time_s") or [0.0]) for t in summary["trials"]]


def run_main(tree: Path, root: str, data_dir: str) -> dict[str, Any]:
    wall, summary = tune_lab(tree, MAIN, root, data_dir)
    longest = max(training(summary))
    best = summary["best"]
    return {"case": "main", "wall_s": round(wall, 2), "longest_trial_s": round(longest, 2),
            "fixed_overhead_s": round(wall - longest, 2), "timeline": summary["timeline"],
            "driver_s": summary.get("driver_s"),  # phases, where recorded
            "best": best["config"]["optimizer"],
            "statuses": {t["config"]["optimizer"]: t["status"] for t in summary["trials"]}}


def run_trials(tree: Path, root: str, data_dir: str, n: int) -> dict[str, Any]:
    wall, summary = tune_lab(tree, [*TRIALS, "--num-samples", str(n)], root, data_dir)
    return {"case": f"trials-{n}", "wall_s": round(wall, 2), "trials": len(summary["trials"]),
            "training_s": round(sum(training(summary)), 2), "slots": os.cpu_count() or 1}  # trials at once: 1 CPU per trial, tune-lab's default


def per_trial(small: dict[str, Any], large: dict[str, Any]) -> float:
    extra = large["trials"] - small["trials"]
    train = (large["training_s"] - small["training_s"]) / large["slots"]
    return (large["wall_s"] - small["wall_s"] - train) / extra


def run_thousand(tree: Path, root: str, data_dir: str) -> dict[str, Any]:
    wall, summary = tune_lab(tree, [*TRIALS, "--num-samples", "1000"], root, data_dir)
    folder = Path(summary["storage"])
    report_s, done = run(tree, ["report", folder.name, "--storage", root], data_dir)  # read from MLflow
    if "read from mlflow" not in done.stdout:
        raise RuntimeError(f"tune-lab report did not read the search from MLflow: {done.stdout[-500:]}")
    disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"case": "trials-1000", "wall_s": round(wall, 1), "trials_in_summary": len({t["trial_id"] for t in summary["trials"]}),
            "trials_in_mlflow": summary["trial_runs_in_mlflow"], "report_s": round(report_s, 1), "disk_mb": round(disk / 1e6, 1),
            "folder": str(folder)}


def table(rows: list[dict[str, Any]]) -> str:
    """Medians per (tree, case), then the derived figures against their targets."""
    lines = ["| tree | case | runs | median wall | median fixed overhead |", "|---|---|---|---|---|"]
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["tree"], r["case"]), []).append(r)
    for (tree, case), runs in by.items():
        fixed = [r["fixed_overhead_s"] for r in runs if "fixed_overhead_s" in r]
        lines.append(f"| {tree} | {case} | {len(runs)} | {statistics.median(r['wall_s'] for r in runs):.1f} s | "
                     + (f"{statistics.median(fixed):.1f} s (target <= {FIXED_TARGET_S:g})" if fixed else "") + " |")
    for (tree, case), runs in by.items():
        timed = [r["timeline"] for r in runs if r.get("timeline")]
        if timed:
            lines.append(f"\nTimeline, {tree} {case} (median s from the process's start): "
                         + ", ".join(f"{k} {statistics.median(t[k] for t in timed):.2f}" for k in timed[0]))
        phased = [r["driver_s"] for r in runs if r.get("driver_s")]
        if phased:
            lines.append(f"\nDriver phases, {tree} {case} (median s; data and mlflow_store run beside ray_start): "
                         + ", ".join(f"{k} {statistics.median(p[k] for p in phased):.2f}" for k in phased[0]))
    for tree in dict.fromkeys(r["tree"] for r in rows):
        small, large = by.get((tree, "trials-10"), []), by.get((tree, "trials-100"), [])
        if small and large:
            figures = [per_trial(s, l) for s, l in zip(small, large)]
            lines.append(f"\nPer-trial overhead, {tree}: " + ", ".join(f"{f:.3f}" for f in figures)
                         + f" s (median {statistics.median(figures):.3f}; target <= {PER_TRIAL_TARGET_S:g})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TUNE_LAB_DATA"), required=os.environ.get("TUNE_LAB_DATA") is None)
    p.add_argument("--before", type=Path, help="a checkout of an earlier commit, run alternately with this one")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cases", nargs="*", default=["main", "trials"], choices=["main", "trials"])
    p.add_argument("--thousand", action="store_true", help="also the 1,000-trial search, once (this checkout)")
    p.add_argument("--keep", type=Path, help="results root to keep (default: a temporary folder, deleted)")
    p.add_argument("--out", type=Path, default=None, help="JSON lines (default benchmarks/results/overhead-TIME.jsonl)")
    args = p.parse_args(argv)
    out = args.out or ROOT / "benchmarks" / "results" / f"overhead-{time.strftime('%Y%m%dT%H%MZ', time.gmtime())}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    trees = {"after": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    root = str(args.keep or tempfile.mkdtemp(prefix="tune-lab-overhead-"))
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db").search_experiments()
    steps = [("main", None)] * ("main" in args.cases) + [("trials", 10), ("trials", 100)] * ("trials" in args.cases)
    rows = []
    try:
        for rep in range(args.reps):
            order = list(trees.items()) if rep % 2 == 0 else list(trees.items())[::-1]
            for case, n in steps:
                for name, tree in order:
                    load = os.getloadavg()[0]
                    row = run_main(tree, root, args.data_dir) if case == "main" else run_trials(tree, root, args.data_dir, n)
                    row |= {"tree": name, "rep": rep + 1, "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
                            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                    rows.append(row)
                    with out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), file=sys.stderr, flush=True)
        if args.thousand:
            row = run_thousand(ROOT, root, args.data_dir) | {"tree": "after", "load_after": round(os.getloadavg()[0], 2)}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), file=sys.stderr, flush=True)
            print(f"1,000 trials: {row['wall_s']} s wall, {row['trials_in_summary']} in summary.json, "
                  f"{row['trials_in_mlflow']} in MLflow, `tune-lab report` {row['report_s']} s "
                  f"(target < {REPORT_TARGET_S:g}), {row['disk_mb']} MB on disk")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if rows:
        print(table(rows))
    print(f"\n(every run: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
