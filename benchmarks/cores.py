"""Every core busy (issue 32): how much of the machine a whole `tune-lab` command keeps working.

Each case is the command a student types, run as a fresh process (`python -m tune_lab ...`, its own Ray), with
the machine-wide CPU time read from /proc/stat before and after: busy time (user, nice, system, irq, softirq,
steal) over wall time x cores. Other work on the machine counts as busy too, so the figure is only meaningful on
a quiet machine; the load average before and after is in the report.

Cases: the main job (`tune-lab mlp --search optimizer`), and a one-setting search (`--set optimizer=adam
epochs=6`) on the default resources against the same with `--cpus-per-trial 1`, interleaved. `--quick` cuts the
data (`--subset 5000`) and the epochs (main job 4), for a smoke run of the benchmark itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks.timing import case_row, interleave, target

MAIN_JOB_S, MIN_BUSY, MIN_ONE_SETTING_SPEEDUP = 55.0, 0.85, 1.25  # issue 32's bars (full run, quiet machine)
ONE_SETTING = ["--set", "optimizer=adam", "epochs=6"]


def cpu_times() -> tuple[float, float]:
    """(busy, total) seconds of all cores since boot, from /proc/stat's first line."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    ticks = os.sysconf("SC_CLK_TCK")
    return (total - idle) / ticks, total / ticks


def _search(args: list[str], root: str, data_dir: str | None) -> Callable[[], dict[str, Any]]:
    def call() -> dict[str, Any]:
        experiment = f"cores-{time.time_ns()}"
        command = [sys.executable, "-m", "tune_lab", "mlp", "--search", "optimizer", *args, "--storage", root,
                   "--experiment", experiment, *(["--data-dir", data_dir] if data_dir else [])]
        busy0, total0 = cpu_times()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        busy1, total1 = cpu_times()
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}: {done.stderr[-2000:]}")
        summary = json.loads((Path(root) / experiment / "summary.json").read_text())
        return {"busy": min(1.0, (busy1 - busy0) / (total1 - total0)),  # (iowait may step back by a tick)
                "best_test_acc": summary["best"]["metrics"].get("test_acc"),
                "threads": sorted({a.get("threads") for t in summary["trials"] for a in t.get("attempts", [])} - {None})}
    return call


def run(quick: bool, reps: int, data_dir: str | None = None) -> dict[str, Any]:
    cut = ["--subset", "5000"] if quick else []
    cases = {
        "main_job": cut + (["--set", "epochs=4"] if quick else []),
        "one_setting_default": cut + ONE_SETTING,
        "one_setting_1_cpu": cut + ONE_SETTING + ["--cpus-per-trial", "1"],
    }
    with tempfile.TemporaryDirectory(prefix="tune-lab-cores-") as root:
        timings = interleave({name: _search(args, root, data_dir) for name, args in cases.items()}, reps, warmup=0)
    rows, busy = [], {}
    for name, seconds in timings.seconds.items():
        runs = timings.returned[name]
        busy[name] = sorted(r["busy"] for r in runs)[len(runs) // 2]
        rows.append(case_row(name, seconds, busy=round(busy[name], 3), busy_reps=[round(r["busy"], 3) for r in runs],
                             best_test_acc=[r["best_test_acc"] for r in runs], threads=runs[0]["threads"]))
    speedup = timings.median("one_setting_1_cpu") / timings.median("one_setting_default")
    return {
        "name": "cores",
        "title": "Every core busy: whole tune-lab commands, machine-wide CPU busy time over wall x cores",
        "settings": {"commands": {k: "tune-lab mlp --search optimizer " + " ".join(v) for k, v in cases.items()},
                     "cores": os.cpu_count(), "reps": reps},
        "cases": rows,
        "ratios": {"one_setting_default_speedup_over_1_cpu": round(speedup, 3)},
        "targets": [
            *([target("main job wall seconds (quiet machine)", timings.median("main_job"), "<=", MAIN_JOB_S)]
              if not quick else []),
            target("main job: CPU busy / (wall x cores)", busy["main_job"], ">=", MIN_BUSY),
            target("one-setting search: default resources' speed-up over --cpus-per-trial 1", speedup, ">=",
                   MIN_ONE_SETTING_SPEEDUP),
        ],
        "notes": ["busy counts every process on the machine: run it on a quiet machine",
                  "each command starts its own Ray, as a student's does; wall and busy include start-up and the report"],
    }
