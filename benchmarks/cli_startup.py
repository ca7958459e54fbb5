"""Start-up time of the command line: `tune-lab --help` and `tune-lab list` as a user runs them,
and the refusal of a bad search file (checked before Ray or torch is imported).

Each is a fresh `python -m tune_lab ...` subprocess (the same code the `tune-lab` script
runs; `-m` keeps the timing on this checkout rather than whichever install is on PATH).
The wall time includes the interpreter's own start, which is part of what a user waits for.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from benchmarks.timing import case_row, interleave, target

BAD_FILE = "lab: mlp\nparams:\n  optimiser: {grid: [sgd, adam]}\n"  # a misspelt parameter: exit 2, one line
COMMANDS = {"help": ["--help"], "list": ["list"], "bad_file": ["mlp", "--search", "BAD_FILE"]}
EXIT_CODES = {"bad_file": 2}
LIMITS_S = {"help": 0.3, "list": 1.0, "bad_file": 1.0}  # issue 16: --help < 0.3 s, a bad file refused < 1 s


def _command(args: list[str], code: int) -> Callable[[], None]:
    def call() -> None:
        done = subprocess.run([sys.executable, "-m", "tune_lab", *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        if done.returncode != code:
            raise RuntimeError(f"python -m tune_lab {' '.join(args)}: exit {done.returncode}, expected {code}")
    return call


def run(quick: bool, reps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        bad = Path(folder) / "bad.yaml"
        bad.write_text(BAD_FILE)
        argv = {name: [str(bad) if a == "BAD_FILE" else a for a in args] for name, args in COMMANDS.items()}
        timings = interleave({name: _command(args, EXIT_CODES.get(name, 0)) for name, args in argv.items()}, reps)
    return {
        "name": "cli",
        "title": "CLI start-up (subprocess wall time)",
        "settings": {"commands": {k: "python -m tune_lab " + " ".join(v) for k, v in COMMANDS.items()},
                     "bad_file": repr(BAD_FILE), "reps": reps},
        "cases": [case_row(name, secs) for name, secs in timings.seconds.items()],
        "ratios": {},
        "targets": [target(f"`tune-lab {' '.join(COMMANDS[n])}` seconds", timings.median(n), "<=", LIMITS_S[n])
                    for n in COMMANDS],
        "notes": ["timed as `python -m tune_lab` (includes interpreter start-up)",
                  "bad_file: a search file with an unknown parameter, refused (exit 2) before Ray or torch is imported"],
    }
