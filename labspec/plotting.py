"""Axis conventions shared by the report's figures (reports/figures.py) and the labs' own figures.

Here, not in reports/, because the labs' report_figures draw their own figures and trainables/
does not import reports/ (reports/ reads what the labs wrote).
"""
from __future__ import annotations

from typing import Any


def epoch_axis(ax: Any) -> None:
    """Whole epochs on the x-axis; one epoch alone (a one-epoch search) centred with its one tick,
    where matplotlib would spread 0.95-1.05 over the axis in fractions of an epoch."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    low, high = ax.dataLim.intervalx
    if low == high:
        ax.set_xlim(low - 1, high + 1)
        ax.set_xticks([low])


LONE_POINT_SIZE = 8


def point_size(epochs: list[Any], usual: float) -> float:
    """The marker size of a curve over `epochs`: `usual`, or big enough to see when one epoch has no line to show it."""
    return LONE_POINT_SIZE if len(epochs) == 1 else usual
