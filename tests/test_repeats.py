"""--repeats: several seeds per configuration, their mean decides, the table says what is real."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch
from scipy import stats

import tests.flaky_lab  # noqa: F401  (registers the "flaky" lab: lab 1 whose seed may diverge)
from reports.seeds import add_seed_statistics
from reports.table import format_table, sweep_rows
from trainables.data import load_images
from labspec.hparams import MLPConfig
from trainables.mlp import Trainer
from trainables.seeds import SeedSequence, seed_everything
from tune_lab.cli import EXIT_USAGE, main
from tune_lab.plan import param_space
from tune_lab.spaces import SearchSpaceError, load_search


def test_a_seed_of_a_group_trains_exactly_as_a_single_seed_trial(tiny_mnist):
    """Each seed keeps its own random streams (init, shuffles, dropout masks): seed 4 of a group
    is the run `--seed 4` alone would make, however many seeds share the trial."""
    data = load_images("mnist", tiny_mnist)
    cfg = MLPConfig(epochs=2, batch_size=64, lr=0.01, dropout=0.3)
    cpu = torch.device("cpu")
    group = SeedSequence(Trainer, cfg, data, cpu, [3, 4])
    grouped = [(group.train_epoch(), group.evaluate()) for _ in range(2)]

    seed_everything(4)
    alone = Trainer(MLPConfig(epochs=2, batch_size=64, lr=0.01, dropout=0.3, seed=4), data, cpu)
    single = [(alone.train_epoch(), alone.evaluate()) for _ in range(2)]
    for (train, evaluation), (train_alone, evaluation_alone) in zip(grouped, single):
        assert train[4] == train_alone and evaluation[4] == evaluation_alone
    assert grouped[-1][1][3] != grouped[-1][1][4]  # the two seeds are different runs

    states = group.state_dicts()
    group.load_state_dicts({4: states[4]})  # seed 3 had failed: it is dropped, seed 4 goes on
    assert group.seeds == [4] and set(group.evaluate()) == {4}


def _trial(trial_id: str, values: list[float], tests: list[float] | None = None) -> dict:
    seeds = {str(s): v for s, v in enumerate(values)}
    return {"trial_id": trial_id, "setting": {"lr": trial_id}, "config": {"repeats": 5}, "status": "completed",
            "epochs_run": 3, "best_epoch": 3, "best": {"val_acc": sum(values) / len(values)},
            "seeds": {"val_acc": seeds, "test_acc": {str(s): v for s, v in enumerate(tests or values)}}}


def test_statistics_intervals_and_verdicts():
    best = [0.90, 0.91, 0.92, 0.905, 0.915]
    record = {"lab": "mlp", "metric": "val_acc", "mode": "max", "metrics": ["val_acc", "test_acc"], "repeats": 5,
              "best": {"trial_id": "a"}, "trials": [
                  _trial("a", best), _trial("b", [0.905, 0.91, 0.90, 0.915, 0.912]),
                  _trial("c", [0.80, 0.81, 0.79, 0.805, 0.795]), _trial("d", [0.95])]}
    add_seed_statistics(record)
    by_id = {t["trial_id"]: t for t in record["trials"]}
    ci = stats.t.interval(0.95, 4, loc=stats.tmean(best), scale=stats.sem(best))
    a = by_id["a"]["seed_stats"]["val_acc"]
    assert a["n"] == 5 and a["std"] == pytest.approx(stats.tstd(best))
    assert (a["ci_low"], a["ci_high"]) == pytest.approx(ci)
    assert by_id["a"]["verdict"]["label"] == "best"
    assert by_id["b"]["verdict"]["label"] == "tied with best" and by_id["b"]["verdict"]["p"] > 0.05
    assert by_id["c"]["verdict"]["label"] == "worse"
    assert by_id["c"]["verdict"]["p"] == pytest.approx(stats.ttest_ind([0.80, 0.81, 0.79, 0.805, 0.795], best, equal_var=False).pvalue)
    assert by_id["d"]["verdict"]["label"] == "unknown (n = 1)"  # one seed: nothing is known
    table = format_table(record)
    assert "91.00 ± 0.79" in table and "worse (p = " in table and "Welch" in table and "1 of 5" in table


def test_one_seed_keeps_todays_table():
    record = {"lab": "mlp", "metric": "val_acc", "mode": "max", "metrics": ["val_acc"], "best": {"trial_id": "a"},
              "trials": [{"trial_id": "a", "setting": {"lr": 1}, "config": {}, "status": "completed", "epochs_run": 1,
                          "best_epoch": 1, "best": {"val_acc": 0.5}}]}
    add_seed_statistics(record)
    assert "seed_stats" not in record["trials"][0]
    assert "±" not in format_table(record) and "vs best" not in format_table(record)


def test_repeats_in_a_search_file(tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("lab: mlp\nparams: {lr: {grid: [0.1, 0.01]}}\nrepeats: 4\n")
    search = load_search(str(space), "mlp")
    assert search.repeats == 4 and "repeats" not in param_space(search)  # run_trial's, not a hyperparameter
    for bad in ("0", "-2", "2.5", "true", "33", "five"):
        space.write_text(f"lab: mlp\nrepeats: {bad}\n")
        with pytest.raises(SearchSpaceError, match=rf"{space}: repeats: .* expected an integer from 1 to 32"):
            load_search(str(space), "mlp")


@pytest.mark.parametrize("bad", ["0", "-1", "2.5", "33", "x"])
def test_bad_repeats_on_the_command_line(bad, tmp_path, capsys):
    code = main(["mlp", "--search", "optimizer", "--repeats", bad, "--storage", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.strip() == f"tune-lab: error: --repeats {bad}: expected an integer from 1 to 32 (seeds per configuration)"
    assert not (tmp_path / "results").exists()  # nothing written


@pytest.mark.parametrize("bad", ["0", "x"])
def test_bad_repeats_of_a_reproduce_get_the_searchs_line(bad, tmp_path, capsys):
    """One --repeats declaration (tune_lab.options): reproduce refuses a bad value in the search's words."""
    code = main(["reproduce", "lab1", "--dry-run", "--repeats", bad, "--storage", str(tmp_path / "results")])
    assert code == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (f"tune-lab: error: --repeats {bad}: expected an integer from 1 to 32 "
                                               "(seeds per configuration)")


SEARCH = """
description: two learning rates, three seeds each (7, 8, 9); in one configuration seed 8 diverges
lab: flaky
metric: val_acc
fixed: {epochs: 3, batch_size: 64, optimizer: adam, lr_schedule: constant}
params:
  lr: {grid: [0.01, 0.00002]}
  diverge_seed: {grid: [-1, 8]}
search: grid
repeats: 3
"""


def test_repeated_search_end_to_end(ray_session, tiny_mnist, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from reports.source import from_mlflow

    space = tmp_path / "seeds.yaml"
    space.write_text(textwrap.dedent(SEARCH))
    code = main(["flaky", "--search", str(space), "--data-dir", str(tiny_mnist), "--storage", str(tmp_path),
                 "--experiment", "seeds", "--seed", "7"])
    out = capsys.readouterr().out
    assert code == 0  # a diverged seed is dropped, not the configuration
    summary = json.loads((tmp_path / "seeds" / "summary.json").read_text())
    assert summary["repeats"] == 3
    by_setting = {(t["config"]["lr"], t["config"]["diverge_seed"]): t for t in summary["trials"]}
    for (lr, diverge), trial in by_setting.items():
        assert trial["status"] == "completed" and set(trial["seed_history"]) == {"7", "8", "9"}
        n = trial["seed_stats"]["val_acc"]["n"]  # the seeds at the selected epoch: seed 8 is gone from epoch 2
        assert n == (2 if diverge == 8 and trial["best_epoch"] > 1 else 3)
        # what ASHA and the checkpoint decided on is the mean of the live seeds, every epoch
        for epoch, mean in enumerate(trial["history"]["val_acc"]):
            live = [h["val_acc"][epoch] for h in trial["seed_history"].values() if h["val_acc"][epoch] is not None]
            assert mean == pytest.approx(sum(live) / len(live))
        if diverge == 8:
            assert trial["seed_history"]["8"]["val_acc"][1:] == [None, None]  # dropped at epoch 2
    assert by_setting[(2e-05, 8)]["best_epoch"] > 1 and by_setting[(2e-05, 8)]["seed_stats"]["val_acc"]["n"] == 2
    assert by_setting[(0.01, -1)]["verdict"]["label"] in ("best", "tied with best")
    assert by_setting[(2e-05, -1)]["verdict"]["label"] == "worse"
    assert "vs best" in out and "2 of 3" in out and "Welch" in out

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    run = client.get_run(by_setting[(2e-05, 8)]["mlflow_run_id"])
    assert run.data.params["repeats"] == "3"
    assert len(client.get_metric_history(run.info.run_id, "val_acc/seed_9")) == 3
    assert len(client.get_metric_history(run.info.run_id, "val_acc/seed_8")) == 1
    rebuilt = from_mlflow(summary["mlflow"]["tracking_uri"], summary["mlflow"]["parent_run_id"])
    for trial in rebuilt["trials"]:
        original = next(t for t in summary["trials"] if t["trial_id"] == trial["trial_id"])
        assert set(trial["seed_stats"]) == set(original["seed_stats"]) == {"val_acc", "test_acc"}
        for metric, stats in trial["seed_stats"].items():
            assert stats == pytest.approx(original["seed_stats"][metric])
        assert trial["verdict"] == original["verdict"]
    report = tmp_path / "seeds" / "report"
    assert "mean ± std" in (report / "report.md").read_text()
    assert (report / "best_curves.png").stat().st_size > 10_000 and (report / "all_trials.png").stat().st_size > 10_000


RETRIED = """
description: a two-seed trial that fails in epoch 2 and is retried from its checkpoint
lab: flaky
metric: val_acc
fixed: {epochs: 2, batch_size: 64, lr: 0.01, fail_at_epoch: 2}
search: grid
repeats: 2
"""


def test_a_retried_trial_continues_every_seed_from_its_checkpoint(ray_session, tiny_mnist, tmp_path):
    space = tmp_path / "retried.yaml"
    space.write_text(textwrap.dedent(RETRIED))
    code = main(["flaky", "--search", str(space), "--data-dir", str(tiny_mnist), "--storage", str(tmp_path),
                 "--experiment", "retried", "--max-failures", "1"])
    assert code == 0
    (trial,) = json.loads((tmp_path / "retried" / "summary.json").read_text())["trials"]
    # the retry restored both seeds from epoch 1's checkpoint (the restored trainers' own epoch
    # counters start again, so the flaky lab does not fail a second time) and ran epoch 2 only
    assert trial["status"] == "completed" and trial["retries"] == 1
    assert trial["history"]["training_iteration"] == [1, 2]
    assert {seed: len(h["val_acc"]) for seed, h in trial["seed_history"].items()} == {"0": 2, "1": 2}
    assert trial["seed_stats"]["val_acc"]["n"] == 2


def test_table2_says_whether_the_labs_figure_is_inside_our_interval():
    """The lab published 87.96% (adam), 89.16% (sgd), 86.49% (adadelta) test accuracy."""
    base = {"model": "mlp", "epochs": 20, "batch_size": 256, "lr": 0.005, "loss": "cross_entropy", "optimizer": "adam"}
    tests = {"adam": [0.878, 0.880, 0.882], "sgd": [0.850, 0.852, 0.848], "adadelta": [0.880, 0.885, 0.890]}
    trials = []
    for i, (optimizer, values) in enumerate(tests.items()):
        trial = _trial(f"t{i}", values)
        trial["config"] = {**base, "optimizer": optimizer, "repeats": 3}
        trials.append(trial)
    record = {"lab": "mlp", "dataset": "fashion_mnist", "metric": "val_acc", "mode": "max", "repeats": 3,
              "metrics": ["val_acc", "test_acc"], "fixed": base, "sweeps": {"optimizer": list(tests)},
              "best": {"trial_id": "t0"}, "trials": trials}
    add_seed_statistics(record)
    rows = {row["setting"]: row for row in sweep_rows(record)}
    assert rows["adam"]["lab's in ours 95% CI"] == "yes"
    assert rows["sgd"]["lab's in ours 95% CI"] == "no, lab's above"
    assert rows["adadelta"]["lab's in ours 95% CI"] == "no, lab's below"
    assert rows["sgd"]["ours ± std"] == 0.2
    record["subset"] = 5000  # not the lab's experiment: no published figure, so nothing to place
    assert all("lab's in ours 95% CI" not in row for row in sweep_rows(record))
