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
