"""What the course labs published (labs.md), to print beside our own figures.

Keys are (lab, parameter, value); figures are percentages (train, test) as the lab reported
them. Lab 1's figures look like Fashion-MNIST results, whatever the lab says.
"""
from __future__ import annotations

from typing import Any

LAB1_SWEEPS: dict[str, list[tuple[Any, float, float]]] = {
    "epochs": [(10, 91.58, 87.96), (20, 93.72, 88.54), (40, 95.73, 89.29)],
    "loss": [("cross_entropy", 91.58, 87.96), ("nll", 86.28, 84.89), ("mse", 87.75, 85.34)],
    "batch_size": [(64, 92.02, 87.61), (128, 93.02, 88.92), (256, 95.72, 89.16)],
    "optimizer": [("sgd", 95.72, 89.16), ("adam", 91.58, 87.96), ("adadelta", 88.64, 86.49)],
}

PUBLISHED: dict[tuple[str, str, Any], tuple[float, float]] = {
    ("mlp", param, value): (train, test)
    for param, rows in LAB1_SWEEPS.items()
    for value, train, test in rows
}


def published_for(lab: str, setting: dict[str, Any]) -> tuple[float, float] | None:
    """The lab's (train %, test %) for a one-parameter setting, if it published one."""
    if len(setting) != 1:
        return None
    ((param, value),) = setting.items()
    return PUBLISHED.get((lab, param, value))
