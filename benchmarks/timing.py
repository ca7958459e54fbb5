"""Shared timing: interleaved repetitions, medians, the machine a figure was measured on.

Every benchmark section times its cases through `interleave`, so all of them use the same
warm-up, ordering and statistic instead of each growing its own timing loop.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Timings:
    """Seconds of each case per repetition, plus whatever each call returned (in call order)."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    returned: dict[str, list[Any]] = field(default_factory=dict)

    def median(self, case: str) -> float:
        return statistics.median(self.seconds[case])


def interleave(cases: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> Timings:
    """Time each case `reps` times, cases alternating, the order reversed every other round.

    Rotating the order (A B C, C B A, ...) keeps a case from always running right after the
    same neighbour, or always first when the machine is idlest. Warm-up calls (allocator,
    lazy imports, optimizer state) are made once per case and not timed.
    """
    for _ in range(warmup):
        for step in cases.values():
            step()
    out = Timings({name: [] for name in cases}, {name: [] for name in cases})
    names = list(cases)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            value = cases[name]()
            out.seconds[name].append(time.perf_counter() - start)
            out.returned[name].append(value)
        print(f"  rep {rep + 1}/{reps}: " + ", ".join(f"{n} {out.seconds[n][-1]:.3f} s" for n in names),
              file=sys.stderr, flush=True)
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def describe_machine() -> dict[str, Any]:
    """What a reader needs to judge the figures: CPU, cores, libraries, device, load."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads_default": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (no GPU)",
        "platform": platform.platform(),
        "load_average_start": load_average(),
    }
    for module in ("ray", "mlflow", "torchvision"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    return info


def case_row(case: str, seconds: list[float], **extra: Any) -> dict[str, Any]:
    """One measured case of a section: its median, every repetition, and any extra figures."""
    return {"case": case, "median_s": statistics.median(seconds), "reps_s": [round(s, 4) for s in seconds], **extra}


def target(what: str, value: float, op: str, limit: float) -> dict[str, Any]:
    """A target of issue 9, checked against a measured value (`op` is "<=" or ">=")."""
    met = value <= limit if op == "<=" else value >= limit
    return {"what": what, "value": round(value, 4), "op": op, "limit": limit, "met": bool(met)}


def epoch_rows(timings: Timings, images: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows of epoch cases whose calls return {"train_s", "eval_s"}: whole, training and evaluation
    medians and training images per second; and each case's median training seconds."""
    train_s = {name: statistics.median(r["train_s"] for r in timings.returned[name]) for name in timings.seconds}
    rows = [case_row(name, secs, train_median_s=round(train_s[name], 4),
                     eval_median_s=round(statistics.median(r["eval_s"] for r in timings.returned[name]), 4),
                     train_images_per_s=round(images / train_s[name], 1))
            for name, secs in timings.seconds.items()]
    return rows, train_s
