"""Same command, same answer (issue 31): decisions that depend on the trials' results, not on their timing.

The scheduler-level tests play Ray's loop (tests/test_promotion.py's `_Controller` does the same): trials with
fixed learning curves report epochs in an order drawn at random, as processes do, on 1 to 3 slots. The
decisions are the real schedulers'; they must come out the same for every order and slot count.
"""
from __future__ import annotations

import random

import pytest
from ray.tune.experiment import Trial

import tests.flaky_lab  # noqa: F401  (registers the "flaky" lab: lab 1 whose trial of one lr can dawdle)
from tests.conftest import run_search

from tune_lab.schedulers import PromotionASHA, StoppingASHA

MAX_T = 12


class _World:
    """Ray's loop, played: trials made in order (all at once, like a grid), slots filled by the scheduler's choice,
    and one running trial at a time, drawn by `rng`, reporting its next epoch."""

    def __init__(self, made, curves: list[list[float]], slots: int, rng: random.Random) -> None:
        self.scheduler, self.curves, self.slots, self.rng = made, curves, slots, rng
        self.trials = {}
        for number in range(len(curves)):
            trial = Trial("run_trial", config={"epochs": MAX_T}, trial_id=f"t{number}", stub=True,
                          experiment_tag=f"{number}_lr={number}")
            self.trials[trial.trial_id] = trial
            made.on_trial_add(self, trial)
        self.search_alg = self  # a grid: every trial made from the start
        self.epochs = {t: 0 for t in self.trials}

    # what the scheduler asks of Ray's controller
    def get_trials(self):
        return list(self.trials.values())

    def is_finished(self):
        return True

    def stop_trial(self, trial):
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            trial.set_status(Trial.TERMINATED)
            self.scheduler.on_trial_remove(self, trial)

    def run(self) -> dict[str, tuple[int, str]]:
        while True:
            while sum(t.status == Trial.RUNNING for t in self.trials.values()) < self.slots:
                chosen = self.scheduler.choose_trial_to_run(self)
                if chosen is None:
                    break
                chosen.set_status(Trial.RUNNING)
            running = [t for t in self.trials.values() if t.status == Trial.RUNNING]
            if not running:
                break
            self._step(self.rng.choice(running))
        return {t.trial_id: (self.epochs[t.trial_id], t.status) for t in self.trials.values()}

    def _step(self, trial) -> None:
        epoch = self.epochs[trial.trial_id] = self.epochs[trial.trial_id] + 1
        result = {"training_iteration": epoch, "val_acc": self.curves[int(trial.trial_id[1:])][epoch - 1],
                  "should_checkpoint": epoch in self.scheduler.rungs}
        trial.update_last_result(result)
        decision = self.scheduler.on_trial_result(self, trial, result)
        if decision == "PAUSE":
            trial.set_status(Trial.PAUSED)
        elif decision == "STOP" or epoch == MAX_T:
            trial.set_status(Trial.TERMINATED)
            self.scheduler.on_trial_complete(self, trial, result)


def _curves(seed: int, count: int) -> list[list[float]]:
    """Learning curves that cross: a trial's rank at one rung does not say its rank at the next."""
    rng = random.Random(seed)
    curves = []
    for _ in range(count):
        ceiling, speed = rng.uniform(80, 99), rng.uniform(0.1, 1.5)
        curves.append([ceiling * (1 - 0.9 / (1 + speed * e)) + rng.uniform(-1, 1) for e in range(1, MAX_T + 1)])
    return curves


def _outcome(kind, curves, slots, order_seed):
    made = kind(max_t=MAX_T, grace_period=1, reduction_factor=3, metric="val_acc", mode="max", slots=slots,
                trials=len(curves))
    return _World(made, curves, slots, random.Random(order_seed)).run(), made


@pytest.mark.parametrize("kind", [StoppingASHA, PromotionASHA])
@pytest.mark.parametrize("search", range(4))
def test_the_same_results_in_any_order_on_any_number_of_slots_get_the_same_decisions(kind, search):
    curves = _curves(search, 9)
    first, made = _outcome(kind, curves, 1, 0)
    assert any(epochs < MAX_T for epochs, _ in first.values()), "a search in which ASHA stopped nobody tests nothing"
    assert any(epochs == MAX_T for epochs, _ in first.values())
    assert all(status == Trial.TERMINATED for _, status in first.values())
    for slots in (1, 2, 3):
        for order_seed in range(6):
            again, _ = _outcome(kind, curves, slots, order_seed)
            assert again == first, f"{kind.__name__}, {slots} slot(s), arrival order {order_seed}"


def test_stopping_asha_judges_a_trial_against_the_trials_made_before_it_as_ray_would_in_order():
    # trial 0 passes (nobody before it); trial 1 beats it; trial 2 is below the 2/3 quantile of {t0, t1}: stopped
    curves = [[50.0 + e for e in range(MAX_T)], [60.0 + e for e in range(MAX_T)], [40.0 + e for e in range(MAX_T)]]
    outcome, made = _outcome(StoppingASHA, curves, 2, 1)
    assert outcome["t2"][0] == 1 and outcome["t0"][0] == MAX_T and outcome["t1"][0] == MAX_T
    assert made.rungs == [1, 3, 9]


def test_promotion_trains_its_finalists_to_the_end_whatever_the_slots():
    curves = _curves(7, 9)
    for slots in (1, 2, 3):
        outcome, made = _outcome(PromotionASHA, curves, slots, slots)
        assert sum(epochs == MAX_T for epochs, _ in outcome.values()) == made.finalists == 2


STOPPING = """
description: stopping ASHA at epochs 1, 2 and 4, a weak first trial and a strong second
lab: flaky
fixed: {epochs: 6, batch_size: 64, optimizer: sgd, momentum: 0.9}
params:
  lr: {grid: [0.0003, 0.05, 0.01, 0.001]}
search: grid
scheduler: {asha: {grace_period: 1, reduction_factor: 2}}
"""


def test_a_real_search_gives_the_same_table_on_one_slot_two_and_with_its_first_trial_slowed(ray_session, tiny_mnist,
                                                                                              tmp_path):
    """The weak first trial, slowed so that the strong second reaches every rung first: Ray's ASHA let the second
    pass rung 1 with nobody to compare with and then stopped the first against it; judged in trial order, the first
    passes (nobody before it) on any timing. Statuses, epochs run and every metric's history are compared."""
    def table(experiment, *options):
        summary = run_search("flaky", STOPPING, tiny_mnist, tmp_path / "results", experiment, "--seed", "1", *options,
                             search="stopping")
        return {t["trial_id"][-5:]: (t["status"], t["epochs_run"], t["best_epoch"],
                                     {k: t["history"][k] for k in ("train_loss", "val_acc", "test_acc")})
                for t in summary["trials"]}

    one = table("one-slot", "--max-concurrent", "1")
    assert {status for status, *_ in one.values()} == {"completed", "stopped early"}
    assert one == table("two-slots", "--max-concurrent", "2")
    slowed = table("slowed", "--max-concurrent", "2", "--set", "slow_lr=0.0003", "slow_s=1.5")
    assert slowed == one


def test_rows_are_listed_in_the_order_the_searcher_made_the_trials_not_by_their_random_ids():
    from reports.record import in_trial_order

    rows = [{"trial_id": tid, "path": f"/r/s/run_trial_{tid}_{number}_lr=0.01_2026-12-07_09-57-35"}
            for tid, number in (("f3a1", 1), ("0b2c", 2), ("9d4e", 3))]
    assert [r["trial_id"] for r in in_trial_order(list(reversed(rows)))] == ["f3a1", "0b2c", "9d4e"]
    grid = [{"trial_id": f"ab12_0000{k}"} for k in (2, 0, 1)]  # rebuilt from MLflow: no folder, ids in order
    assert [r["trial_id"] for r in in_trial_order(grid)] == ["ab12_00000", "ab12_00001", "ab12_00002"]
