"""Promotion ASHA (issue 21): the search-file option, exact pause / promote, what Optuna is told."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch

from tests.conftest import run_search, start_killable_search
from trainables.data import load_images
from labspec.hparams import MLPConfig
from trainables.mlp import Trainer
from trainables.seeds import SeedSequence
from tune_lab.cli import EXIT_USAGE, main
from tune_lab.schedulers import OrderedOptunaSearch, PromotionASHA, StoppingASHA, promotion_caps
from tune_lab.plan import scheduler
from tune_lab.spaces import SearchSpaceError, load_search, rung_epochs

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
    assert isinstance(made, PromotionASHA) and made.rungs == [1, 2] and made.slots == 2 and made.finalists == 2
    three = _search(tmp_path, "scheduler: {promotion: {grace_period: 1, reduction_factor: 2, finalists: 3}}")
    assert scheduler(three).finalists == 3
    assert isinstance(scheduler(search, "asha"), StoppingASHA)  # asha keeps its meaning: ASHA's stopping variant
    assert type(scheduler(search, "fifo")).__name__ == "FIFOScheduler"
    assert _search(tmp_path, "scheduler: promotion").scheduler_args == {"grace_period": 1, "reduction_factor": 3}
    fifo = _search(tmp_path, "scheduler: fifo")
    assert isinstance(scheduler(fifo, "promotion"), PromotionASHA)  # --scheduler promotion on a fifo file: defaults


@pytest.mark.parametrize("spec, key, allowed", [
    ("scheduler: {promotion: {grace: 1}}", "scheduler.promotion", "grace_period, reduction_factor, finalists"),
    ("scheduler: {asha: {finalists: 1}}", "scheduler.asha", "grace_period, reduction_factor"),
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
    # It paused at rung 1 (nobody to compare with yet) and was promoted there once a second trial had come; the new
    # trials ran first (breadth first), so at rung 2 the last of them waited for it, and it went on at once.
    assert good["schedule"] == [{"epoch": 1, "event": "paused"}, {"epoch": 1, "event": "promoted"}]
    assert good["status"] == "completed" and good["epochs_run"] == 4
    others = [t for t in summary["trials"] if t is not good]
    # the second of the two finalists trained to the end too; the others stopped where they waited
    assert sorted((t["status"], t["epochs_run"] < 4) for t in others) == [
        ("completed", False), ("stopped early", True), ("stopped early", True)]
    assert any(e["event"] == "stopped" for t in others for e in t["schedule"])
    assert summary["scheduler"] == "promotion" and summary["rungs"] == [1, 2]

    straight = run_search("mlp", SEARCH.replace("[0.01, 1.0e-7, 2.0e-7, 3.0e-7]", "[0.01]"), tiny_mnist, results,
                          "straight", "--seed", "3", "--scheduler", "fifo", "--repeats", repeats, "--cpus-per-trial", "1",
                          search="fifo")  # one thread, as each of the four trials above had
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
    assert "- lr=0.01: paused at epoch 1; promoted at epoch 1; completed" in report
    assert "^: paused there and promoted" in report
    from reports.source import from_mlflow  # `tune-lab report` rebuilds the same marks from MLflow

    rebuilt = from_mlflow(summary["mlflow"]["tracking_uri"], summary["mlflow"]["parent_run_id"])
    assert {t["trial_id"]: t["schedule"] for t in rebuilt["trials"]} == {t["trial_id"]: t["schedule"] for t in summary["trials"]}


def _ordered_searcher():
    from ray import tune

    searcher = OrderedOptunaSearch(seed=0, first_rung=1)
    searcher.set_search_properties("val_acc", "max", {"lr": tune.loguniform(1e-4, 1e-1)})
    searcher._ot_study.sampler._n_startup_trials = 2  # TPE from the third trial on: the history matters
    return searcher


def test_the_lr_search_draws_the_same_settings_without_a_seed():
    from ray import tune

    from tune_lab.plan import search_algorithm

    search = load_search("lr", "mlp")
    drawn = []
    for _ in range(2):
        searcher = search_algorithm(search, None, first_rung=1)
        searcher.set_search_properties("val_acc", "max", {"lr": tune.loguniform(1e-5, 0.3)})
        drawn.append([searcher.suggest(f"t{k}") for k in range(2)])
    assert drawn[0] == drawn[1] and drawn[0][0] != drawn[0][1]


def test_optuna_learns_each_trial_at_its_first_rung_in_trial_order_whatever_came_first():
    """Trial k is suggested once trials up to k - 2 have their first-rung result, and Optuna knows exactly those,
    told PRUNED at that epoch: two searchers whose trials reported in different orders and at different times
    suggest the same settings."""
    import optuna

    values = {0: 0.5, 1: 0.9, 2: 0.7, 3: 0.6, 4: 0.8}
    first, second = _ordered_searcher(), _ordered_searcher()
    made = {}
    for k in range(6):  # the first: every result as soon as it can be, a later epoch besides
        made.setdefault("first", []).append(first.suggest(f"a{k}"))
        first.on_trial_result(f"a{k}", {"val_acc": values.get(k, 0.1), "training_iteration": 1})
        first.on_trial_result(f"a{k}", {"val_acc": 0.99, "training_iteration": 2})  # never reaches Optuna
    # the second: trial 2 waits for trial 0's result, which comes late, after trial 1's
    assert [second.suggest("b0") is not None, second.suggest("b1") is not None] == [True, True]
    assert second.suggest("b2") is None  # trial 0 has no first-rung result yet
    second.on_trial_result("b1", {"val_acc": values[1], "training_iteration": 1})
    assert second.suggest("b2") is None
    second.on_trial_complete("b0", {"val_acc": values[0], "training_iteration": 1})  # stopped there: Ray skips on_trial_result
    later = [second.suggest("b2")]
    for k in range(2, 5):
        second.on_trial_result(f"b{k}", {"val_acc": values[k], "training_iteration": 1})
        later.append(second.suggest(f"b{k + 1}"))
    assert [second._ot_trials[f"b{k}"].params for k in range(6)] == [first._ot_trials[f"a{k}"].params for k in range(6)]
    told = [t for t in first._ot_study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.RUNNING]
    assert [(t.state, t.last_step, t.intermediate_values[1]) for t in told] == [
        (optuna.trial.TrialState.PRUNED, 1, values[k]) for k in range(4)]  # trials 0-3, learned before trial 5


def test_a_trial_that_failed_before_its_first_rung_is_told_failed():
    import optuna

    searcher = _ordered_searcher()
    searcher.suggest("t0"), searcher.suggest("t1")
    searcher.on_trial_complete("t0", None, error=True)
    searcher.on_trial_result("t1", {"val_acc": 0.5, "training_iteration": 1})
    assert searcher.suggest("t2") is not None and searcher.suggest("t3") is not None
    states = [t.state for t in searcher._ot_study.get_trials(deepcopy=False)]
    assert states[:2] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED]


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
    state = folder / "rungs.state"
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
    made = PromotionASHA(max_t=20, grace_period=1, reduction_factor=3, metric="val_acc", mode="max", slots=slots,
                         state_file=state_file, trials=count)
    controller = _Controller(trials)
    for trial in trials.values():  # made in name order: the order the scheduler judges them in
        made.on_trial_add(controller, trial)
        trial.set_status(Trial.RUNNING)
    return made, controller, trials


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


def test_a_trial_ahead_of_an_earlier_one_waits_at_the_rung_until_it_can_be_judged():
    """b reaches rung 1 before a: judged against a (ASHA's rule over the trials made before it), so it waits.
    Once a is there, both are judged in order; c, made before neither, still runs and holds rung 1 open for d."""
    made, controller, trials = _scheduler_and_trials("abcd", slots=None)
    assert _report(made, controller, trials["b"], 1, 0.95) == "PAUSE" and made.decided[1] == []
    assert _report(made, controller, trials["a"], 1, 0.90) == "PAUSE"  # a judged: one trial, a third of it is none
    assert made.decided[1] == ["a", "b"] and made.promoted[1] == []
    assert _report(made, controller, trials["d"], 1, 0.99) == "PAUSE" and made.decided[1] == ["a", "b"]
    assert _report(made, controller, trials["c"], 1, 0.80) == "PAUSE"  # three judged: the best, b, goes on ...
    assert made.decided[1] == ["a", "b", "c", "d"] and made.promoted[1] == ["b", "d"]  # ... then four: d too
    assert _choose(made, controller) == "b"  # the earlier of the two
    assert [e["event"] for e in made.events if e["trial_id"] == "b"] == ["paused", "promoted"]


def test_a_closed_rung_sends_its_best_on_until_it_has_its_finalists_and_stops_the_rest(tmp_path):
    """Nine trials at rung 1 promote three (a third); at rung 3 the three promote one; the search has no more
    trials, so rung 3 closes: its second best goes on as a finisher (finalists: 2), the third stops there;
    rung 1's waiting trials stopped when it closed."""
    state = tmp_path / "rungs.state"
    made, controller, trials = _scheduler_and_trials("abcdefghi", slots=2, state_file=str(state), count=9)
    controller.finished = True
    decisions = [_report(made, controller, trials[name], 1, value)
                 for name, value in zip("abcdefghi", (0.95, 0.90, 0.85, 0.80, 0.78, 0.76, 0.74, 0.72, 0.70))]
    assert decisions[-1] == "STOP"  # i, the last, closes rung 1: stopped there at once
    assert made.promoted[1] == ["a", "b", "c"] and 1 in made.closed
    assert [_choose(made, controller), _choose(made, controller)] == ["a", "b"]
    assert sorted(controller.stopped) == list("defgh")  # stopped while they waited
    assert _report(made, controller, trials["a"], 3, 0.97) == "PAUSE"
    assert _choose(made, controller) == "c"
    assert _report(made, controller, trials["b"], 3, 0.96) == "PAUSE"
    assert _report(made, controller, trials["c"], 3, 0.90) == "STOP"  # rung 3 closed with it: a and b go on
    assert made.promoted[3] == ["a", "b"] and made.finishers == ["b"]
    saved = json.loads(state.read_text())
    assert saved["finishers"] == ["b"] and saved["promoted"]["3"] == ["a", "b"] and saved["ended"]["c"] == 3


def test_a_trial_told_to_pause_frees_its_slot_while_ray_still_saves_it():
    """Ray keeps a trial RUNNING while it saves the checkpoint of a pause, then stops it; Ray hands the stopped
    trial's process to a successor only if one is staged by then (docs/benchmarks.md). So the successor is chosen as
    soon as the trial is told to pause."""
    from ray.tune.experiment import Trial

    made, controller, trials = _scheduler_and_trials("ab", slots=1)
    trials["b"].set_status(Trial.PENDING)
    result = {"training_iteration": 1, "val_acc": 0.5, "should_checkpoint": True}
    trials["a"].update_last_result(result)
    assert made.on_trial_result(controller, trials["a"], result) == "PAUSE"
    assert trials["a"].status == Trial.RUNNING  # as in Ray until the checkpoint is saved
    assert _choose(made, controller) == "b"


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
    assert f"{went_on} went on" in made.debug_string()


def test_a_resumed_search_keeps_its_caps_and_what_counted_against_them(tmp_path):
    """The promotions already made before a kill count against the cap after the resume."""
    state = str(tmp_path / "rungs.state")
    made, controller, trials = _scheduler_and_trials("abcdefghi", slots=None, state_file=state, count=6)
    assert [_report(made, controller, trials[n], 1, v) for n, v in zip("abcd", (0.90, 0.91, 0.92, 0.93))] == [
        "PAUSE", "PAUSE", "CONTINUE", "CONTINUE"]
    resumed, controller, trials = _scheduler_and_trials("abcdefghi", slots=None, state_file=state, count=6)
    assert resumed.promoted[1] == ["c", "d"] and resumed.order == made.order
    assert [_report(resumed, controller, trials[n], 1, v) for n, v in zip("efghi", (0.94, 0.95, 0.96, 0.97, 0.98))] == [
        "PAUSE"] * 5
    assert resumed.promoted[1] == ["c", "d"] and resumed.decided[1] == list("abcdefghi")


def test_a_search_counts_its_trials():
    assert load_search("lr", "mlp").trial_count() == 16
    assert load_search("lr", "mlp").trial_count(40) == 40
    grid = load_search("optimizer", "mlp")
    assert grid.trial_count() == len(grid.params["optimizer"].args) * grid.num_samples
    assert grid.trial_count(2) == 2 * grid.trial_count(1)
    sweeps = load_search("table2", "mlp")  # one trial per sweep case
    assert sweeps.trial_count() == len(sweeps.cases()) * sweeps.num_samples > 1


FINALISTS = (RESUMABLE.replace("promotion ASHA killed while trials wait at rungs", "the end of a search, two slots or one")
             .replace("epochs: 8, batch_size: 32", "epochs: 6, batch_size: 64").replace("reduction_factor: 2", "reduction_factor: 3"))


def _table(summary):
    """What a search's table says of each trial (its wall time aside)."""
    return {t["trial_id"][-5:]: (t["status"], t["epochs_run"], t["history"]["val_loss"]) for t in summary["trials"]}


def test_a_search_gives_the_same_table_on_two_slots_and_on_one(ray_session, tiny_mnist, tmp_path):
    """Real trials, rungs 1 and 3: the finalists (two) trained to the end whatever the slots, the others stopped
    where they waited, and every decision the same on two slots and on one."""
    tables = {}
    for slots in (2, 1):
        summary = run_search("mlp", FINALISTS, tiny_mnist, tmp_path / "results", f"finalists-{slots}", "--seed", "3",
                             "--max-concurrent", str(slots), search="finalists")
        state = json.loads((tmp_path / "results" / f"finalists-{slots}" / "rungs.state").read_text())
        completed = [t for t in summary["trials"] if t["status"] == "completed"]
        assert len(completed) == 2 and all(t["epochs_run"] == 6 for t in completed)
        for trial in summary["trials"]:
            assert trial["history"]["training_iteration"] == list(range(1, trial["epochs_run"] + 1))
            if trial["status"] != "completed":
                assert trial["status"] == "stopped early" and trial["epochs_run"] in (1, 3)
                assert trial["schedule"][-1] == {"epoch": trial["epochs_run"], "event": "stopped"}
        assert {t["trial_id"] for t in completed} == set(state["promoted"]["3"])
        assert summary["rung_caps"] == [2, 1]  # four trials: ceil(4 / 3) at rung 1, ceil(2 / 3) at rung 3
        report = (tmp_path / "results" / f"finalists-{slots}" / "report" / "report.md").read_text()
        assert "at most 2 at epoch 1, 1 at epoch 3 (what synchronous" in report and "after 1 epoch;" not in report
        tables[slots] = _table(summary)
    assert tables[1] == tables[2]
