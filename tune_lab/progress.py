"""A search's progress in a notebook: one line that updates in place, instead of Ray's tables.

Ray's CLIReporter prints a whole status table every 15 s; in a notebook cell those pile up (128
lines for two tiny searches). This reporter keeps one display and rewrites it: trials done,
stopped by the scheduler, failed, running and waiting, and the best value of the searched metric so far.
"""
from __future__ import annotations

import html
import time
from typing import Any

from ray.tune import ProgressReporter

from reports.record import Status


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a plain IPython shell or a script)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class NotebookProgress(ProgressReporter):
    def __init__(self, metric: str, mode: str, every_s: float = 1.0) -> None:
        from IPython.display import HTML, display

        self.metric, self.mode, self.every_s = metric, mode, every_s
        self._last = 0.0
        self._handle = display(HTML("tune-lab: starting trials ..."), display_id=True)

    def should_report(self, trials: list, done: bool = False) -> bool:
        return done or time.monotonic() - self._last >= self.every_s

    def report(self, trials: list, done: bool, *sys_info: str) -> None:
        from IPython.display import HTML

        self._last = time.monotonic()
        self._handle.update(HTML(html.escape(self.line(trials, done))))

    def line(self, trials: list, done: bool) -> str:
        """Trials done (of them, how many the scheduler stopped and how many failed), running, waiting; the best so far."""
        finished = [t for t in trials if t.status == "TERMINATED"]
        stopped = sum(1 for t in finished if _epochs(t) < (t.config.get("epochs") or 0))
        failed = sum(1 for t in trials if t.status == "ERROR")
        running = sum(1 for t in trials if t.status == "RUNNING")
        waiting = sum(1 for t in trials if t.status in ("PENDING", "PAUSED"))
        text = (f"tune-lab: {len(finished)} of {len(trials)} trials done ({stopped} {Status.STOPPED_EARLY}, {failed} failed), "
                f"{running} running, {waiting} waiting")
        scored = [(t.metric_analysis[self.metric][self.mode], t.trial_id) for t in trials
                  if self.metric in getattr(t, "metric_analysis", {})]
        if scored:
            value, trial_id = (max if self.mode == "max" else min)(scored)
            text += f"; best {self.metric} {value:.4g} (trial {trial_id})"
        return text + ("; finished" if done else "")


def _epochs(trial: Any) -> int:
    return int((trial.last_result or {}).get("training_iteration") or 0)
