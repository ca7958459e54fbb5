"""A Ray node that dies under a search (issue 31): one line naming it and the resume command, exit 3, no state dump;
`tune-lab resume` then runs the trial it took down again."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from tune_lab.cli import EXIT_NODE_LOST, main

SEARCH = """
description: two trials, one at a time; the node dies under the second
lab: mlp
fixed: {epochs: 3, batch_size: 64}
params:
  lr: {grid: [0.01, 0.02]}
search: grid
scheduler: fifo
"""


def _raylet_of(driver_pid: int) -> int | None:
    """The raylet the driver started (its child: `ray.init` starts a local Ray's processes itself)."""
    listing = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(driver_pid)], capture_output=True, text=True).stdout
    return next((int(pid) for pid, name in (line.split(None, 1) for line in listing.splitlines()) if name.strip() == "raylet"),
                None)


def test_a_dead_node_is_named_in_one_line_and_the_search_resumes(tiny_mnist, tmp_path):
    space = tmp_path / "lost.yaml"
    space.write_text(textwrap.dedent(SEARCH))
    root, folder = tmp_path / "results", tmp_path / "results" / "lost"
    driver = subprocess.Popen([sys.executable, "-m", "tune_lab", "mlp", "--search", str(space), "--data-dir",
                               str(tiny_mnist), "--storage", str(root), "--experiment", "lost", "--max-concurrent", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        # the second trial has started: the first is done, so what the kill takes is that trial alone
        while not list(folder.glob("run_trial_*_00001_*")):
            assert driver.poll() is None, driver.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "the second trial never started"
            time.sleep(0.1)
        raylet = _raylet_of(driver.pid)
        assert raylet is not None, "no raylet under the driver"
        os.kill(raylet, signal.SIGKILL)
        out, err = driver.communicate(timeout=240)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # the Ray it started, whatever is left of it
        except ProcessLookupError:
            pass
    assert driver.returncode == EXIT_NODE_LOST, err[-3000:]
    assert "[state-dump]" not in out + err
    said = [line for line in err.splitlines() if "Ray node died" in line]
    assert len(said) == 1 and "raylet.out" in said[0] and f"tune-lab resume {folder}" in said[0], err[-3000:]
    summary = json.loads((folder / "summary.json").read_text())
    assert not summary.get("complete") and "Ray node died" in summary["node_lost"]
    assert not (folder / "report" / "report.md").exists()  # no report of a search that did not end

    assert main(["resume", str(folder)]) == 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] and "node_lost" not in summary
    assert [(t["status"], t["epochs_run"]) for t in summary["trials"]] == [("completed", 3), ("completed", 3)]
