"""Issue 31's acceptance: the same command gives the same table, on the default slots and on one, and how long.

    python -m benchmarks.same_answer --data-dir $TUNE_LAB_DATA [--runs 3] [--searches main lr seq2seq]
    python -m benchmarks.same_answer --data-dir $TUNE_LAB_DATA --before /path/to/a/checkout/of/the/old/code

Each search runs `--runs` times as given and once with `--max-concurrent 1`, each as its own fresh
`tune-lab` process (in this checkout, or with `--before` alternately in that one and in this one:
the wall times then compare the two side by side in one run). A run's table is what the report
shows of each trial, in trial order: its setting, status, epochs run, best epoch and every
metric's whole history; wall times and throughput are left out. Prints, per search, whether every
table equals the first and the wall times, and writes the JSON lines to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEARCHES = {  # name -> the command's arguments after `tune-lab`
    "main": ["mlp", "--search", "optimizer"],
    "lr": ["mlp", "--search", "lr", "--set", "dropout=0"],
    "seq2seq": ["seq2seq", "--search", "lr", "--subset", "2000", "--set", "epochs=4"],
}
TIMING_KEYS = ("epoch_time_s", "samples_per_s", "time_this_iter_s", "time_total_s", "timestamp", "placement")


def table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The trials as the report shows them, wall times and throughput left out."""
    return [{"setting": t.get("setting"), "status": t["status"], "epochs_run": t["epochs_run"],
             "best_epoch": t.get("best_epoch"),
             "history": {k: v for k, v in (t.get("history") or {}).items() if k not in TIMING_KEYS}}
            for t in summary["trials"]]


def run(args: list[str], checkout: Path, data_dir: str, storage: str, experiment: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "tune_lab", *args, "--data-dir", data_dir, "--storage", storage,
               "--experiment", experiment]
    for attempt in range(3):  # Ray's start times out on a machine loaded by others: that run is not a result
        began = time.perf_counter()
        done = subprocess.run(command, cwd=checkout, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(checkout)})
        wall = time.perf_counter() - began
        if "timed out during startup" not in done.stderr:
            break
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} in {checkout} failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads((Path(storage) / experiment / "summary.json").read_text())
    best = summary["best"] or {}
    return {"checkout": str(checkout), "command": "tune-lab " + " ".join(args), "wall_s": round(wall, 1),
            "best_test_acc": (best.get("metrics") or {}).get("test_acc"), "table": table(summary)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TUNE_LAB_DATA"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--searches", nargs="+", choices=sorted(SEARCHES), default=["main", "lr", "seq2seq"])
    parser.add_argument("--before", type=Path, help="a checkout of the code before the change, run alternately")
    parser.add_argument("--storage", default="/tmp/tune-lab-same-answer")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"same-answer-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"))
    opts = parser.parse_args(argv)
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    for name in opts.searches:
        rows: list[dict[str, Any]] = []
        plan = [(ROOT, [], f"run{k}") for k in range(opts.runs)] + [(ROOT, ["--max-concurrent", "1"], "one-slot")]
        if opts.before:
            plan = [p for k in range(opts.runs) for p in ((opts.before, [], f"before{k}"), (ROOT, [], f"run{k}"))]
        for checkout, extra, label in plan:
            row = run(SEARCHES[name] + extra, checkout, opts.data_dir, f"{opts.storage}/{name}",
                      f"{name}-{label}-{time.strftime('%H%M%S')}")
            row.update(search=name, label=label)
            rows.append(row)
            with open(opts.out, "a") as out:
                out.write(json.dumps(row) + "\n")
            print(f"{name} {label}: {row['wall_s']} s, best test acc {row['best_test_acc']}", flush=True)
        ours = [r for r in rows if r["checkout"] == str(ROOT)]
        same = all(r["table"] == ours[0]["table"] for r in ours)
        line = f"{name}: {len(ours)} tables of this checkout {'all equal' if same else 'DIFFER'}"
        for side in sorted({r["checkout"] for r in rows}):
            walls = [r["wall_s"] for r in rows if r["checkout"] == side and r["label"] != "one-slot"]
            line += f"; {side}: wall median {statistics.median(walls):.1f} s of {walls}"
        print(line, flush=True)
        for trial in ours[0]["table"]:
            print(f"  {trial['setting']}: {trial['status']}, {trial['epochs_run']} epochs, best epoch {trial['best_epoch']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
