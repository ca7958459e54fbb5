"""Where each trial ran, for how long, and how often it was retried: recorded on the driver.

On one machine this is trivia; on a cluster it is what a user asks after a search ("did my
trials use both GPU nodes?", "which trials were restarted when that node died?"). The trial
reports its node and GPU ids with every epoch (trainables.loop.placement); this callback
turns them into one span per attempt, timed with the driver's clock (one clock for all
nodes), and counts Ray's retries (`FailureConfig(max_failures=...)`) through
`on_trial_recover`.

It also owns the single warning for declared GPUs that do not exist: the trial falls back to
the CPU, and the driver says so once per search instead of once per trial on every node (a
node that has GPUs torch cannot use fails the trial instead: trainables.loop.choose_device).
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

from ray.tune import Callback

from tune_lab.ray_internals import gpu_share

GPU_FALLBACK_WARNING = (
    "tune-lab: WARNING: Ray gave a trial GPU {gpus} on node {node}, which has no NVIDIA GPU (GPUs declared "
    "with `ray start --num-gpus` that do not exist); those trials run on the CPU (this warning is shown once per "
    "search). Pass --gpus-per-trial 0 to stop reserving GPUs."
)


class PlacementCallback(Callback):
    """Per trial: a list of attempts (node, GPU ids and share, device, start/end on the driver clock)."""

    def __init__(self) -> None:
        self._spans: dict[str, list[dict[str, Any]]] = {}
        self._retries: dict[str, int] = {}
        self._warned = False

    def _open(self, trial: Any) -> dict[str, Any]:
        spans = self._spans.setdefault(trial.trial_id, [])
        if not spans or spans[-1]["end"] is not None:
            spans.append({"node_id": None, "gpu_ids": [], "gpu_share": gpu_share(trial), "device": None,
                          "start": time.time(), "end": None})
        return spans[-1]

    def _close(self, trial: Any) -> None:
        spans = self._spans.get(trial.trial_id)
        if spans and spans[-1]["end"] is None:
            spans[-1]["end"] = time.time()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._open(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        where = result.get("placement")
        if not isinstance(where, dict):
            return
        span = self._open(trial)  # a restarted trial may report before Ray calls on_trial_start again
        span.update(node_id=where.get("node_id") or None, gpu_ids=json.loads(where.get("gpu_ids") or "[]"),
                    device=where.get("device"), threads=int(where.get("threads") or 0) or None)
        if span["gpu_ids"] and span["device"] == "cpu" and not self._warned:
            self._warned = True
            print(GPU_FALLBACK_WARNING.format(gpus=",".join(span["gpu_ids"]), node=span["node_id"]),
                  file=sys.stderr, flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Ray caught the failure and will restart the trial (from its last checkpoint)."""
        self._close(trial)
        self._retries[trial.trial_id] = self._retries.get(trial.trial_id, 0) + 1

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial)

    def records(self) -> dict[str, dict[str, Any]]:
        """{trial_id: {"retries": n, "nodes": [...], "attempts": [span, ...]}} for summary.json."""
        out = {}
        for trial_id in self._spans.keys() | self._retries.keys():
            spans = self._spans.get(trial_id, [])
            nodes = list(dict.fromkeys(s["node_id"] for s in spans if s["node_id"]))
            out[trial_id] = {"retries": self._retries.get(trial_id, 0), "nodes": nodes, "attempts": spans}
        return out


def add_placement(summary: dict[str, Any], records: dict[str, dict[str, Any]]) -> None:
    """Give every trial row of summary.json its `retries`, `nodes` and `attempts`."""
    for row in summary["trials"]:
        row.update(records.get(row["trial_id"], {"retries": 0, "nodes": [], "attempts": []}))
