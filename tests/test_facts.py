"""Issue 31, sections 2 and 3: reports say what was run, and MLflow's runs read like the report.

One real search (Ray Tune trials, the SQLite MLflow store) on tiny data with --subset and --set, then
what a student sees: report.md / report.html, the terminal's closing lines, the parent run's
description, and the trial runs' names, params, outcome tags and percent metrics.
"""
from __future__ import annotations

import json
import textwrap

import pytest

from reports import facts, units
from tune_lab.cli import main

SEARCH = """\
description: Which optimizer? (issue 31 check)
lab: mlp
metric: val_acc
mode: max
fixed: {epochs: 3, batch_size: 128, lr: 0.005}
params:
  optimizer: {grid: [sgd, adam]}
search: grid
num_samples: 1
scheduler: fifo
"""


@pytest.fixture(scope="module")
def subset_search(ray_session, tiny_mnist, tmp_path_factory):
    """`--subset 600 --set epochs=2 dropout=0.2 --seed 3`: every one of them must show up."""
    root = tmp_path_factory.mktemp("facts")
    space = root / "optimizer.yaml"
    space.write_text(textwrap.dedent(SEARCH))
    return root, space


def test_every_report_says_what_was_run(subset_search, tiny_mnist, capsys):
    root, space = subset_search
    code = main(["mlp", "--search", str(space), "--data-dir", str(tiny_mnist), "--storage", str(root / "results"),
                 "--experiment", "facts", "--subset", "600", "--set", "epochs=2", "dropout=0.2", "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((root / "results" / "facts" / "summary.json").read_text())
    assert summary["overrides"] == {"epochs": 2, "dropout": 0.2} and summary["seed"] == 3 and summary["subset"] == 600
    train = int(summary["split"].split(" train")[0])
    assert train == 600, summary["split"]  # the split the trials used, not the dataset's size

    wanted = ["--subset 600", "epochs=2, dropout=0.2", "seed 3", "plain logits out", "dropout 0.2 after each hidden layer",
              "cosine learning-rate schedule", "One seed per setting", "--repeats 3"]
    report = root / "results" / "facts" / "report"
    md, html = (report / "report.md").read_text(), (report / "report.html").read_text()
    for text in wanted:
        assert text in md, text
        assert text in html, text
        assert text in out, text  # the terminal's table note and closing lines
    assert "600 of its training samples" in md.splitlines()[0]  # the title itself

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    note = client.get_run(summary["mlflow"]["parent_run_id"]).data.tags["mlflow.note.content"]
    for text in ("--subset 600", "epochs=2, dropout=0.2", "seed 3", "plain logits out"):
        assert text in note, text


def test_trial_runs_are_named_by_setting_with_their_outcome_params_and_percentages(subset_search):
    root, _ = subset_search
    summary = json.loads((root / "results" / "facts" / "summary.json").read_text())
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    names = set()
    for trial in summary["trials"]:
        run = client.get_run(trial["mlflow_run_id"])
        names.add(run.info.run_name)
        assert run.data.params["optimizer"] == trial["config"]["optimizer"]
        assert run.data.params["epochs"] == "2" and run.data.params["dropout"] == "0.2"
        assert run.data.tags["outcome"] == "completed (2 epochs)"
        assert run.data.tags["tune_lab.status"] == "completed"
        history = {p.step: p.value for p in client.get_metric_history(run.info.run_id, "val_acc")}
        percent = {p.step: p.value for p in client.get_metric_history(run.info.run_id, "val_acc_pct")}
        assert percent.keys() == history.keys() == {1, 2}
        assert all(percent[s] == pytest.approx(100 * history[s]) for s in history)
    assert names == {"optimizer=sgd", "optimizer=adam"}
    view = json.loads(client.get_experiment(summary["mlflow"]["experiment_id"]).tags["mlflow.sharedViewState.tune-lab-facts"])
    assert "params.`optimizer`" in view["selectedColumns"] and "tags.`outcome`" in view["selectedColumns"]
    assert summary["mlflow"]["parent_run_id"] in view["searchFilter"]


def test_one_rule_of_decimals_per_metric():
    """The table cell, the paragraph's value and its gap use the same decimals for a metric."""
    assert units.text("val_acc", 0.98444) == "98.44%" and units.shown("val_acc", 0.98444) == 98.44
    assert units.text("val_bleu", 15.27534) == "15.28" and units.gap("val_bleu", 15.13, 15.5439) == "0.41"
    assert units.cell("val_bleu", 15.2) == "15.20" and units.cell("val acc %", 93.1) == "93.10"
    assert units.cell("wall time s", 19.62) == "19.6" and units.cell("epochs run", 6) == "6"
    assert units.text("fid", 169.44) == "169.4" and units.text("val_mse", 0.012345) == "0.01235"


def test_gaps_inside_the_measured_seed_spread_are_named():
    trials = [{"trial_id": t, "best": {"val_acc": v}} for t, v in (("a", 0.90), ("b", 0.895), ("c", 0.85))]
    record = {"lab": "mlp", "dataset": "mnist", "metric": "val_acc", "repeats": 1, "subset": 2000, "trials": trials,
              "best": {"trial_id": "a", "metrics": {"val_acc": 0.90}}}
    note = facts.seed_note(record)
    assert "0.74 points (--subset 2000" in note and "gaps under 2.05 points" in note and "1 of the 2 other" in note
    assert facts.noise_words(record, -0.005) == "inside the seed spread"
    assert facts.noise_words(record, -0.05) == "beyond the seed spread"
    assert facts.noise_words({**record, "lab": "seq2seq", "metric": "val_bleu"}, -0.4) == "one seed, spread not measured"
    assert facts.seed_note({**record, "repeats": 3}) == ""  # error bars instead


def test_the_lab_as_written_table_names_real_settings():
    """A renamed hyperparameter must fail here, not silently drop a line from every report."""
    import dataclasses

    from labspec.registry import get_lab

    for lab, table in facts.AS_WRITTEN.items():
        fields = {f.name for f in dataclasses.fields(get_lab(lab).config)}
        assert set(table) <= fields, (lab, set(table) - fields)
        assert facts.IGNORED_WHEN_FAITHFUL.get(lab, set()) <= fields


def test_lab3_quick_plan_names_the_trials_it_retrains():
    from tune_lab.reproduce.plan import load_plan, retrained

    again = retrained(load_plan("lab3", quick=True))
    assert sum(len(v) for v in again.values()) == 3
    assert again["attention"] == [("attention=False", "cell's cell=gru"), ("attention=True", "max-length's max_length=10")]
