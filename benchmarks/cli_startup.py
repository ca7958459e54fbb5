"""Start-up time of the command line: `tune-lab --help` and `tune-lab list` as a user runs them.

Each is a fresh `python -m tune_lab ...` subprocess (the same code the `tune-lab` script
runs; `-m` keeps the timing on this checkout rather than whichever install is on PATH).
The wall time includes the interpreter's own start, which is part of what a user waits for.
"""
from __future__ import annotations

import subprocess
import sys
from typing import Any, Callable

from benchmarks.timing import case_row, interleave, target

COMMANDS = {"help": ["--help"], "list": ["list"]}
LIMITS_S = {"help": 0.5, "list": 1.0}


def _command(args: list[str]) -> Callable[[], None]:
    def call() -> None:
        subprocess.run([sys.executable, "-m", "tune_lab", *args], check=True, stdout=subprocess.DEVNULL)
    return call


def run(quick: bool, reps: int) -> dict[str, Any]:
    timings = interleave({name: _command(args) for name, args in COMMANDS.items()}, reps)
    return {
        "name": "cli",
        "title": "CLI start-up (subprocess wall time)",
        "settings": {"commands": {k: "python -m tune_lab " + " ".join(v) for k, v in COMMANDS.items()}, "reps": reps},
        "cases": [case_row(name, secs) for name, secs in timings.seconds.items()],
        "ratios": {},
        "targets": [target(f"`tune-lab {' '.join(COMMANDS[n])}` seconds", timings.median(n), "<=", LIMITS_S[n])
                    for n in COMMANDS],
        "notes": ["timed as `python -m tune_lab` (includes interpreter start-up)"],
    }
