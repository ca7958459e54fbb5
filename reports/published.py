"""What the course labs published (labs.md), to print beside our own figures.

Keys are (lab, parameter, value); figures are percentages (train, test) as the lab reported
them. A figure is shown only beside a run of the lab's own experiment: the dataset the figures
come from, all training images, and the lab's value of every other setting it reported. Beside
an MNIST run, the 8x8 digits fallback, a smoke-sized subset or a one-epoch run it would mean
nothing (issue 20), so there the column stays blank.
"""
from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Conditions:
    """Under what a lab's figures were measured: each row changes one `base` setting."""

    dataset: str
    base: dict[str, Any]
    note: str


LAB_CONDITIONS: dict[str, Conditions] = {
    # labs.md says MNIST, but its accuracies (test ~88%) are Fashion-MNIST's.
    "mlp": Conditions(
        dataset="fashion_mnist",
        base={"model": "mlp", "epochs": 20, "batch_size": 256, "lr": 0.005, "loss": "cross_entropy", "optimizer": "adam"},
        note="the test accuracy lab 1 published for the same setting: Fashion-MNIST (its figures are "
             "Fashion-MNIST's), all training images, the lab's MLP with 20 epochs, batch 256, lr 0.005, "
             "cross-entropy and Adam except the one value varied; blank where our run differs",
    ),
}


def published_for(record: dict[str, Any], param: str, value: Any, config: dict[str, Any]) -> tuple[float, float] | None:
    """The lab's (train %, test %) for `param` = `value`, if it published one for a run like ours.

    `record` is the search (its lab, dataset and --subset), `config` the trial's whole configuration.
    """
    figures = PUBLISHED.get((record["lab"], param, value))
    conditions = LAB_CONDITIONS.get(record["lab"])
    if figures is None or conditions is None:
        return None
    if record.get("dataset") != conditions.dataset or record.get("subset"):
        return None
    if config.get(param) != value or any(config.get(k) != v for k, v in conditions.base.items() if k != param):
        return None
    return figures


def published_note(lab: str) -> str:
    """The footnote of a table that shows the lab's figures: what they are and where they are blank."""
    conditions = LAB_CONDITIONS.get(lab)
    return f"lab's test acc %: {conditions.note}." if conditions else ""
