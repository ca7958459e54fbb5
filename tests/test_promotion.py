"""Promotion ASHA (issue 21): the search-file option, exact pause / promote, what Optuna is told."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch

from tests.conftest import run_search, start_killable_search
from trainables.data import load_images
from trainables.hparams import MLPConfig
from trainables.mlp import Trainer
from trainables.seeds import SeedSequence
from tune_lab.cli import EXIT_USAGE, main
from tune_lab.schedulers import PromotionASHA, ResumableASHA, RungOptunaSearch, promotion_caps, rung_epochs
from tune_lab.spaces import SearchSpaceError, load_search, scheduler

BASE = """
description: promotion
lab: mlp
fixed: {epochs: 4, batch_size: 64}
params:
  lr: {grid: [0.05, 0.01]}
search: grid
"""


def _search(tmp_path, scheduler_yaml: str):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(BASE) + scheduler_yaml + "\n")
    return load_search(str(path), "mlp")


def test_rungs_are_below_the_last_epoch():
    assert rung_epochs(1, 3, 20) == [1, 3, 9]
    assert rung_epochs(1, 3, 9) == [1, 3]  # a trial at its last epoch is done, not paused
    assert rung_epochs(2, 2, 20) == [2, 4, 8, 16]
    assert rung_epochs(5, 3, 5) == []


def test_the_search_file_names_the_scheduler_and_the_command_line_overrides_it(tmp_path):
    search = _search(tmp_path, "scheduler: {promotion: {grace_period: 1, reduction_factor: 2}}")
    assert search.scheduler == "promotion" and search.scheduler_args == {"grace_period": 1, "reduction_factor": 2}
    made = scheduler(search, slots=2)
    assert isinstance(made, PromotionASHA) and made.rungs == [1, 2] and made.slots == 2
    assert isinstance(scheduler(search, "asha"), ResumableASHA)  # asha keeps its meaning: Ray's stopping ASHA (a subclass)
    assert type(scheduler(search, "fifo")).__name__ == "FIFOScheduler"
    assert _search(tmp_path, "scheduler: promotion").scheduler_args == {"grace_period": 1, "reduction_factor": 3}
    fifo = _search(tmp_path, "scheduler: fifo")
    assert isinstance(scheduler(fifo, "promotion"), PromotionASHA)  # --scheduler promotion on a fifo file: defaults


@pytest.mark.parametrize("spec, key, allowed", [
    ("scheduler: {promotion: {grace: 1}}", "scheduler.promotion", "grace_period, reduction_factor"),
    ("scheduler: {promotion: {reduction_factor: 1}}", "scheduler.promotion.reduction_factor", "a number > 1"),
    ("scheduler: {promotion: {grace_period: 0}}", "scheduler.promotion.grace_period", "an integer >= 1"),
    ("scheduler: hyperband", "scheduler", "fifo, asha, promotion"),
    ("scheduler: {promotion: 3}", "scheduler.promotion", "grace_period, reduction_factor"),
])
def test_a_bad_scheduler_gets_one_line_naming_file_key_and_what_is_allowed(tmp_path, spec, key, allowed):
    with pytest.raises(SearchSpaceError) as caught:
        _search(tmp_path, spec)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "s.yaml") in message
    assert f"{key}:" in message and allowed in message


def test_the_command_line_takes_promotion_and_refuses_others(capsys):
    with pytest.raises(SystemExit) as info:
        main(["mlp", "--search", "lr", "--scheduler", "hyperband"])
    assert info.value.code == EXIT_USAGE and "'asha', 'promotion', 'fifo'" in capsys.readouterr().err


def test_a_checkpoint_carries_each_seeds_random_streams(tiny_mnist):
    """Two epochs, a checkpoint, a new process's group loading it, a third epoch: the same as three
    epochs in one go, with dropout on (its masks come from the global stream) and a shuffled order."""
    data = load_images("mnist", tiny_mnist)
    cfg = MLPConfig(epochs=3, batch_size=64, lr=0.01, dropout=0.3)
    cpu = torch.device("cpu")
    straight = SeedSequence(Trainer, cfg, data, cpu, [3, 4])
    for _ in range(3):
        expected = straight.train_epoch(), straight.evaluate()

    first = SeedSequence(Trainer, cfg, data, cpu, [3, 4])
    for _ in range(2):
        first.train_epoch(), first.evaluate()
    saved = torch.load(_save(first.state_dicts()), weights_only=True)  # as run_trial's checkpoint loads
    torch.manual_seed(999)  # whatever ran in between in this process
    resumed = SeedSequence(Trainer, cfg, data, cpu, [3, 4])
    resumed.load_state_dicts(saved)
    assert (resumed.train_epoch(), resumed.evaluate()) == expected


def _save(states):
    import io

    buffer = io.BytesIO()
    torch.save(states, buffer)
    buffer.seek(0)
    return buffer


SEARCH = """
description: a trial that pauses at each rung and is promoted, against the same trial run straight
lab: mlp
metric: val_loss
mode: min
fixed: {epochs: 4, batch_size: 64, optimizer: sgd, momentum: 0.9, dropout: 0.2}
params:
  lr: {grid: [0.01, 1.0e-7, 2.0e-7, 3.0e-7]}
search: grid
scheduler: {promotion: {grace_period: 1, reduction_factor: 2}}
"""


@pytest.mark.parametrize("repeats", ["1", "2"])  # 2: the scheduler decides on the seed-mean, both seeds pause and resume
def test_a_paused_and_promoted_trial_reports_what_an_uninterrupted_trial_reports(ray_session, tiny_mnist, tmp_path, repeats):
    results = tmp_path / "results"
    summary = run_search("mlp", SEARCH, tiny_mnist, results, "promoted", "--seed", "3", "--max-concurrent", "1",
                         "--repeats", repeats, search="promotion")
    good = next(t for t in summary["trials"] if t["setting"] == {"lr": 0.01})
    # It paused at rung 1 (nobody to compare with yet) and at rung 2, and was promoted from both.
    assert {"epoch": 1, "event": "paused"} in good["schedule"] and {"epoch": 1, "event": "promoted"} in good["schedule"]
    assert {"epoch": 2, "event": "promoted"} in good["schedule"]
    assert good["status"] == "completed" and good["epochs_run"] == 4
    others = [t for t in summary["trials"] if t is not good]
    assert all(t["status"] == "stopped early" and t["epochs_run"] < 4 for t in others)
    assert any(e["event"] == "stopped" for t in others for e in t["schedule"])
    assert summary["scheduler"] == "promotion" and summary["rungs"] == [1, 2]

    straight = run_search("mlp", SEARCH.replace("[0.01, 1.0e-7, 2.0e-7, 3.0e-7]", "[0.01]"), tiny_mnist, results,
                          "straight", "--seed", "3", "--scheduler", "fifo", "--repeats", repeats, search="fifo")
    alone = straight["trials"][0]
    assert "schedule" not in alone and alone["epochs_run"] == 4
    # Exact: the same float every epoch (1 thread, the same ops; the checkpoint restores weights,
    # optimizer, shuffling generator and the global stream that draws the dropout masks).
    for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc"):
        assert good["history"][metric] == alone["history"][metric], metric
    if repeats == "2":  # each seed on its own, not only their mean
        assert good["seed_history"] and good["seed_history"] == alone["seed_history"]
    # Every epoch once in MLflow, though the trial ran in three pieces.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    steps = [m.step for m in client.get_metric_history(good["mlflow_run_id"], "val_loss")]
    assert sorted(steps) == [1, 2, 3, 4]
    # The kept checkpoint is the best epoch's, not the rung checkpoint kept for resuming.
    saved = torch.load(f"{summary['best']['checkpoint']}/checkpoint.pt", weights_only=True)
    assert saved["epoch"] == good["best_epoch"]
    report = (results / "promoted" / "report" / "report.md").read_text()
    assert "- lr=0.01: paused at epoch 1; promoted at epoch 1; paused at epoch 2; promoted at epoch 2; completed" in report
    assert "^: paused there and promoted" in report
    from reports.source import from_mlflow  # `tune-lab report` rebuilds the same marks from MLflow

    rebuilt = from_mlflow(summary["mlflow"]["tracking_uri"], summary["mlflow"]["parent_run_id"])
    assert {t["trial_id"]: t["schedule"] for t in rebuilt["trials"]} == {t["trial_id"]: t["schedule"] for t in summary["trials"]}


def test_optuna_is_told_a_stopped_trial_was_pruned_at_its_last_epoch():
    """What Ray's OptunaSearch tells Optuna about a trial ASHA stopped at epoch 2 of 5: COMPLETE,
    valued at epoch 2. Ours: PRUNED there, its epoch-2 value recorded as the intermediate value."""
    import optuna
    from ray import tune

    searcher = RungOptunaSearch(seed=0, max_t=5)
    searcher.set_search_properties("val_acc", "max", {"lr": tune.loguniform(1e-4, 1e-1)})
    for trial_id in ("stopped", "finished", "paused"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("stopped", {"val_acc": 0.5, "training_iteration": 1, "config/epochs": 5})
    # Ray passes the result that stopped it only to on_trial_complete
    searcher.on_trial_complete("stopped", {"val_acc": 0.6, "training_iteration": 2, "config/epochs": 5})
    for epoch in range(1, 6):
        searcher.on_trial_result("finished", {"val_acc": 0.9, "training_iteration": epoch, "config/epochs": 5})
    searcher.on_trial_complete("finished", {"val_acc": 0.9, "training_iteration": 5, "config/epochs": 5})
    searcher.on_trial_result("paused", {"val_acc": 0.7, "training_iteration": 1, "config/epochs": 5})
    searcher.on_pause("paused")  # told at once: TPE learns from it while it waits
    searcher.on_trial_result("paused", {"val_acc": 0.8, "training_iteration": 2, "config/epochs": 5})
    searcher.on_trial_complete("paused", {"val_acc": 0.95, "training_iteration": 5, "config/epochs": 5})

    trials = searcher._ot_study.get_trials(deepcopy=False)  # the study Ray's OptunaSearch keeps
    states = [(t.state, t.value, t.last_step) for t in trials]
    P, C = optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE
    assert states[0] == (P, 0.6, 2)
    assert states[1] == (C, 0.9, 5)
    assert states[2] == (P, 0.7, 1)  # the pause
    assert states[3][:2] == (C, 0.95) and trials[3].params == trials[2].params  # promoted, then finished
    assert len(trials) == 4


RESUMABLE = """
description: promotion ASHA killed while trials wait at rungs
lab: mlp
metric: val_loss
mode: min
fixed: {epochs: 8, batch_size: 32, optimizer: sgd, momentum: 0.9}
params:
  lr: {grid: [0.05, 0.02, 0.01, 0.005]}
search: grid
scheduler: {promotion: {grace_period: 1, reduction_factor: 2}}
"""


def _waiting(state_file) -> dict[str, int]:
    try:
        return json.loads(state_file.read_text())["waiting"]
    except (OSError, ValueError, KeyError):
        return {}


def test_killed_while_trials_wait_at_rungs_resumes_with_the_same_decisions(ray_session, tiny_mnist, tmp_path):
    """kill -9 with two trials waiting at rungs: `tune-lab resume` keeps them waiting until promoted,
    and every epoch of every trial is in the summary and in MLflow once."""
    import os
    import signal
    import time

    space = tmp_path / "resumable.yaml"
    space.write_text(textwrap.dedent(RESUMABLE))
    folder = tmp_path / "results" / "killed"
    state = folder / "promotion-asha.state"
    driver = start_killable_search(space, tiny_mnist, tmp_path / "results", "killed")
    try:
        deadline = time.monotonic() + 240
        while len(_waiting(state)) < 2:
            assert driver.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "no two trials ever waited at once"
            time.sleep(0.1)
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.communicate(timeout=120)
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    waiting_at_kill = json.loads(state.read_text())["waiting"]
    assert main(["resume", str(folder)]) == 0

    summary = json.loads((folder / "summary.json").read_text())
    events = json.loads(state.read_text())["events"]
    assert len(summary["trials"]) == 4 and summary["complete"]
    assert sum(t["status"] == "completed" for t in summary["trials"]) >= 1
    for trial in summary["trials"]:
        assert trial["status"] in ("completed", "stopped early"), trial["status"]
        assert trial["history"]["training_iteration"] == list(range(1, trial["epochs_run"] + 1))
        if trial["status"] == "stopped early":
            assert trial["epochs_run"] in (1, 2, 4) and trial["schedule"][-1]["event"] == "stopped"
        rung = waiting_at_kill.get(trial["trial_id"])
        if rung is not None:  # it waited when killed: it went on only if promoted from that rung afterwards
            assert trial["epochs_run"] >= rung
            promoted = {"trial_id": trial["trial_id"], "epoch": rung, "event": "promoted"} in events
            assert promoted == (trial["epochs_run"] > rung)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    for trial in summary["trials"]:
        run = client.get_run(trial["mlflow_run_id"])
        assert run.data.tags["tune_lab.status"] == trial["status"] and run.info.status == "FINISHED"  # waited at the kill too
        steps = {m.step for m in client.get_metric_history(trial["mlflow_run_id"], "val_loss")}
        assert steps == set(range(1, trial["epochs_run"] + 1))


class _Controller:
    """What PromotionASHA asks of Ray's TuneController: its trials, its search algorithm (finished or not)
    and stop_trial. The scheduler's decisions are the real ones; only Ray's loop is played here, so that
    each decision can be asked at a chosen moment instead of whenever two real trials' timing makes it."""

    def __init__(self, trials):
        self.trials, self.stopped, self.finished = trials, [], False
        self.search_alg = self

    def get_trials(self):
        return list(self.trials.values())

    def is_finished(self):
        return self.finished

    def stop_trial(self, trial):
        self.stopped.append(trial.trial_id)
        trial.set_status("TERMINATED")


def _scheduler_and_trials(names, slots, state_file=None, count=None):
    from ray.tune.experiment import Trial

    trials = {name: Trial("run_trial", config={"epochs": 20}, trial_id=name, stub=True) for name in names}
    for trial in trials.values():
        trial.set_status(Trial.RUNNING)
    made = PromotionASHA(max_t=20, grace_period=1, reduction_factor=3, metric="val_acc", mode="max", slots=slots,
                         state_file=state_file, trials=count)
    return made, _Controller(trials), trials


def _report(made, controller, trial, epoch, value):
    """One epoch's result through the scheduler, the trial's status set as Ray would set it on the decision."""
    result = {"training_iteration": epoch, "val_acc": value, "should_checkpoint": True}
    trial.update_last_result(result)
    decision = made.on_trial_result(controller, trial, result)
    trial.set_status({"PAUSE": "PAUSED", "STOP": "TERMINATED", "CONTINUE": "RUNNING"}[decision])
    return decision


def _choose(made, controller):
    chosen = made.choose_trial_to_run(controller)
    if chosen is not None:
        chosen.set_status("RUNNING")
    return chosen and chosen.trial_id


def _to_the_end_phase(made, controller, trials):
    """Nine trials through rung 1 (a, b, c promoted: the top third), a, b, c to rung 3 (a promoted), a to rung 9,
    where it waits: nobody to compare it with. Then the search has no more trials to start."""
    for name, value in zip("abcdefghi", (0.95, 0.90, 0.85, 0.80, 0.78, 0.76, 0.74, 0.72, 0.70)):
        _report(made, controller, trials[name], 1, value)
    assert [_choose(made, controller), _choose(made, controller)] == ["a", "b"]
    assert _report(made, controller, trials["a"], 3, 0.97) == "PAUSE"
    assert _choose(made, controller) == "c"
    assert _report(made, controller, trials["b"], 3, 0.96) == "PAUSE"
    assert _report(made, controller, trials["c"], 3, 0.90) == "PAUSE"  # rung 3 has three: a, its best, may go on
    assert _choose(made, controller) == "a"
    assert _report(made, controller, trials["a"], 9, 0.98) == "PAUSE"
    controller.finished = True


@pytest.mark.parametrize("count", [None, 9])  # 9 trials: caps 3, 1, 1, which this rung table reaches, not passes
def test_the_end_of_a_search_trains_as_many_finishers_as_slots_the_longest_run_first(tmp_path, count):
    """Two slots: two finishers, not one (a lone finisher leaves the other slot idle for its last leg). b, the
    best trial rung 3 has not promoted, starts first, from epoch 3; a goes on from rung 9 in the other slot;
    b passes rung 9 without a pause (a pause would only cost a restore); c, third at rung 3, is not trained.
    The same with the caps of a nine-trial search: a finisher is not held back by its rung's cap."""
    state = tmp_path / "promotion-asha.state"
    made, controller, trials = _scheduler_and_trials("abcdefghi", slots=2, state_file=str(state), count=count)
    _to_the_end_phase(made, controller, trials)

    assert _choose(made, controller) == "b"  # 17 epochs to go, before a's 11
    assert _choose(made, controller) == "a"
    assert _choose(made, controller) is None  # both slots busy
    assert _report(made, controller, trials["b"], 9, 0.975) == "CONTINUE"
    assert made.finishers == ["b", "a", "b"]
    for epoch in range(10, 21):
        assert _report(made, controller, trials["a"], epoch, 0.98) == "CONTINUE"
    trials["a"].set_status("TERMINATED")
    # A slot is free while b still has 11 epochs to go: c, 17 from the end, would outlast it.
    assert _choose(made, controller) is None and controller.stopped == []
    trials["b"].set_status("TERMINATED")
    assert _choose(made, controller) is None  # nothing runs: what still waits is stopped
    assert sorted(controller.stopped) == list("cdefghi")
    saved = json.loads(state.read_text())
    assert saved["finishers"] == ["b", "a", "b"] and saved["promoted"]["9"] == ["a", "b"]



def test_caps_are_what_synchronous_halving_promotes_over_the_whole_search():
    assert promotion_caps([1, 3, 9], 16, 3) == {1: 6, 3: 2, 9: 1}  # the mlp lr search
    assert promotion_caps([1, 2, 4], 12, 2) == {1: 6, 2: 3, 4: 2}
    assert promotion_caps([1, 3, 9], None, 3) == {}


def _rising(made, controller, trials):
    """Nine trials reach rung 1, each better than all before it (TPE improving on its random start)."""
    return [_report(made, controller, trials[name], 1, 0.90 + 0.01 * k) for k, name in enumerate("abcdefghi")]


@pytest.mark.parametrize("count, went_on", [(None, 7), (6, 2), (9, 3)])
def test_a_rung_promotes_by_rank_no_more_than_its_cap(count, went_on):
    """ASHA's rule alone lets each later, better arrival go on once three are there: seven of nine. Capped by the
    search's size (6 trials: 2 at rung 1; 9 trials: 3), the rest wait at the rung, the later ones among them."""
    made, controller, trials = _scheduler_and_trials("abcdefghi", slots=None, count=count)
    decisions = _rising(made, controller, trials)
    assert decisions.count("CONTINUE") == went_on
    assert decisions[:2] == ["PAUSE", "PAUSE"] and decisions[2] == "CONTINUE"  # c: the first with two behind it
    assert _choose(made, controller) is None  # every paused trial is behind the cap: nobody promoted while new ones come
    assert len(made.waiting) == 9 - went_on
    assert f"{went_on} promoted" in made.debug_string()


def test_a_resumed_search_keeps_its_caps_and_what_counted_against_them(tmp_path):
    """The promotions already made before a kill count against the cap after the resume."""
    state = str(tmp_path / "promotion-asha.state")
    made, controller, trials = _scheduler_and_trials("abcdefghi", slots=None, state_file=state, count=6)
    assert [_report(made, controller, trials[n], 1, v) for n, v in zip("abcd", (0.90, 0.91, 0.92, 0.93))] == [
        "PAUSE", "PAUSE", "CONTINUE", "CONTINUE"]
    resumed, controller, trials = _scheduler_and_trials("abcdefghi", slots=None, state_file=state, count=6)
    pending = trials["i"]
    pending.set_status("PENDING")
    resumed.on_trial_add(controller, pending)  # the first trial added after a resume reads the rung table
    pending.set_status("RUNNING")
    assert resumed.promoted[1] == ["c", "d"]
    assert [_report(resumed, controller, trials[n], 1, v) for n, v in zip("efgh", (0.94, 0.95, 0.96, 0.97))] == [
        "PAUSE"] * 4


def test_a_scheduler_pickled_without_caps_resumes_uncapped():
    """A search started by a tune-lab before the caps is resumed from its pickled scheduler, which has none."""
    made, controller, trials = _scheduler_and_trials("abcdefghi", slots=None, count=6)
    del made.caps
    assert _rising(made, controller, trials).count("CONTINUE") == 7


def test_a_search_counts_its_trials():
    assert load_search("lr", "mlp").trial_count() == 16
    assert load_search("lr", "mlp").trial_count(40) == 40
    grid = load_search("optimizer", "mlp")
    assert grid.trial_count() == len(grid.params["optimizer"].args) * grid.num_samples
    assert grid.trial_count(2) == 2 * grid.trial_count(1)
    sweeps = load_search("table2", "mlp")  # one trial per sweep case
    assert sweeps.trial_count() == len(sweeps.cases()) * sweeps.num_samples > 1


def test_one_slot_one_finisher():
    """The same rung table with one slot: the end of the search trains one trial on, a, from rung 9."""
    made, controller, trials = _scheduler_and_trials("abcdefghi", slots=2)
    _to_the_end_phase(made, controller, trials)
    made.slots = 1
    assert _choose(made, controller) == "a" and made.finishers == ["a"]
    assert _choose(made, controller) is None  # the slot is a's


def test_a_trial_told_to_pause_frees_its_slot_while_ray_still_saves_it():
    """Ray keeps a trial RUNNING while it saves the checkpoint of a pause, then stops it. Once the searcher has no
    more trials, Ray hands the stopped trial's process to a successor only if one is staged by then; otherwise every
    later promotion starts a new trial process (~5-8 s of a slot on two cores, docs/benchmarks.md). So the successor
    is chosen as soon as the trial is told to pause: with one slot, the finisher a as soon as j, the search's last
    new trial, is told to wait at rung 1 (and j, waiting, is no longer one that could overtake a at rung 9)."""
    from ray.tune.experiment import Trial

    made, controller, trials = _scheduler_and_trials("abcdefghi", slots=2)
    _to_the_end_phase(made, controller, trials)
    made.slots = 1
    last = controller.trials["j"] = Trial("run_trial", config={"epochs": 20}, trial_id="j", stub=True)
    last.set_status(Trial.RUNNING)
    assert _choose(made, controller) is None  # j has the slot, and might still reach rung 9 ahead of a
    result = {"training_iteration": 1, "val_acc": 0.5, "should_checkpoint": True}
    last.update_last_result(result)
    assert made.on_trial_result(controller, last, result) == "PAUSE"
    assert last.status == Trial.RUNNING  # as in Ray until the checkpoint is saved
    assert _choose(made, controller) == "a" and made.finishers == ["a"]


def test_a_runner_up_takes_an_idle_slot_only_if_it_ends_no_later_than_the_finisher():
    """The runner-up rule, where it acts: a scheduler given no slot count (one finisher, and a slot whenever
    Ray asks). Nine epochs, rungs 1 and 3. While the finisher a runs its 6 last epochs from rung 3, b, also
    waiting at rung 3 (6 to go), takes an idle slot; c, waiting at rung 1 (8 to go), does not: it would end
    the search after a."""
    from ray.tune.experiment import Trial

    trials = {name: Trial("run_trial", config={"epochs": 9}, trial_id=name, stub=True) for name in "abcdef"}
    for trial in trials.values():
        trial.set_status(Trial.RUNNING)
    made = PromotionASHA(max_t=9, grace_period=1, reduction_factor=3, metric="val_acc", mode="max", slots=None)
    controller = _Controller(trials)
    assert made.rungs == [1, 3]
    for name, value in zip("abcdef", (0.95, 0.90, 0.85, 0.80, 0.78, 0.76)):
        _report(made, controller, trials[name], 1, value)
    assert [_choose(made, controller), _choose(made, controller)] == ["a", "b"]  # the top third of six
    assert _report(made, controller, trials["a"], 3, 0.97) == "PAUSE"
    assert _report(made, controller, trials["b"], 3, 0.96) == "PAUSE"  # two at rung 3: nobody goes on yet
    controller.finished = True
    assert _choose(made, controller) == "a" and made.finishers == ["a"]
    assert _choose(made, controller) == "b" and made.finishers == ["a"]  # the runner-up: 6 epochs, as a
    assert _choose(made, controller) is None and "c" in made.waiting
    for epoch in range(4, 10):
        assert _report(made, controller, trials["a"], epoch, 0.98) == "CONTINUE"
        assert _report(made, controller, trials["b"], epoch, 0.97) == "CONTINUE"
    trials["a"].set_status("TERMINATED")
    trials["b"].set_status("TERMINATED")
    assert _choose(made, controller) is None and sorted(controller.stopped) == list("cdef")


FINALISTS = (RESUMABLE.replace("promotion ASHA killed while trials wait at rungs", "the end of a search, two slots or one")
             .replace("epochs: 8, batch_size: 32", "epochs: 6, batch_size: 64").replace("reduction_factor: 2", "reduction_factor: 3"))


@pytest.mark.parametrize("slots", [2, 1])
def test_a_search_trains_as_many_trials_to_the_end_as_it_has_slots(ray_session, tiny_mnist, tmp_path, slots):
    """Real trials, rungs 1 and 3: a third of four trials is one, so plain ASHA trains one or two trials to the
    end (two when a later arrival at rung 3 is its best). With two slots the end of the search trains at least
    two (the second slot would otherwise idle), with one slot at least one; the others are stopped where they
    waited."""
    summary = run_search("mlp", FINALISTS, tiny_mnist, tmp_path / "results", f"finalists-{slots}", "--seed", "3",
                         "--max-concurrent", str(slots), search="finalists")
    state = json.loads((tmp_path / "results" / f"finalists-{slots}" / "promotion-asha.state").read_text())
    completed = [t for t in summary["trials"] if t["status"] == "completed"]
    asha_alone = len(state["records"]["3"]) // 3  # what rung 3 promotes by ASHA's own rule
    assert slots <= len(completed) <= slots + asha_alone and all(t["epochs_run"] == 6 for t in completed)
    if asha_alone == 0:  # fewer than three reached rung 3: every trial that completed is a finisher
        assert set(state["finishers"]) >= {t["trial_id"] for t in completed}
    for trial in summary["trials"]:
        assert trial["history"]["training_iteration"] == list(range(1, trial["epochs_run"] + 1))
        if trial["status"] != "completed":
            assert trial["status"] == "stopped early" and trial["epochs_run"] in (1, 3)
            assert trial["schedule"][-1] == {"epoch": trial["epochs_run"], "event": "stopped"}
    assert {t["trial_id"] for t in completed} == set(state["promoted"]["3"])
    assert summary["rung_caps"] == [2, 1]  # four trials: ceil(4 / 3) at rung 1, ceil(2 / 3) at rung 3
    report = (tmp_path / "results" / f"finalists-{slots}" / "report" / "report.md").read_text()
    assert "at most 2 at epoch 1, 1 at epoch 3 (what synchronous" in report and "after 1 epoch;" not in report
    # Every trial, resumed or new, ran in one of `slots` trial processes: Ray reused them (reuse_actors) to the end.
    pids = {json.loads(line)["pid"] for folder in (tmp_path / "results" / f"finalists-{slots}").glob("run_trial_*")
            for line in (folder / "result.json").read_text().splitlines()}
    assert len(pids) == slots
