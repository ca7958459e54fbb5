"""Default resources from the machine (issue 32): a search spreads the CPUs it has over the trials that can run at once."""
from __future__ import annotations

import pytest

from tests.conftest import run_search
from tune_lab.capacity import MAX_DEFAULT_THREADS, default_cpus


@pytest.mark.parametrize("cores, trials, cpus", [
    (2, 1, 2),  # a one-setting search takes both cores
    (2, 3, 1),  # the main job on two cores: one each, two at once
    (8, 3, 2),  # ... on a student's 8-core laptop: 2 each
    (8, 16, 1),
    (32, 1, MAX_DEFAULT_THREADS),  # more threads than that are not known to pay
    (1, 5, 1),
    (3.5, 1, 3),  # Ray's fractional CPUs: whole threads
])
def test_a_trial_gets_the_machines_cpus_spread_over_the_trials_that_run_at_once(cores, trials, cpus):
    assert default_cpus(cores, trials) == cpus


ONE = """
description: one setting
lab: mlp
fixed: {epochs: 1, batch_size: 64, lr: 0.01}
search: grid
scheduler: fifo
"""


def test_a_one_trial_search_trains_on_every_core_and_cpus_per_trial_still_decides(ray_session, tiny_mnist, tmp_path):
    wide = run_search("mlp", ONE, tiny_mnist, tmp_path / "results", "wide")
    narrow = run_search("mlp", ONE, tiny_mnist, tmp_path / "results", "narrow", "--cpus-per-trial", "1")
    threads = lambda summary: {a["threads"] for t in summary["trials"] for a in t["attempts"]}  # noqa: E731
    assert threads(wide) == {2} and threads(narrow) == {1}  # the suite's Ray has 2 CPUs
