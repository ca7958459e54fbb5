"""A finished search as pandas DataFrames (issue 30): typed, the same from summary.json and MLflow."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from reports.frame import best_of, curves_frame, metric_column, trials_frame
from reports.record import trial_row
from tests.conftest import run_search

# One search covers what a student's frame must get right: a one-at-a-time sweep (its case, lr and
# variant, overrides the fixed lr), one variant, two seeds per configuration. Its 1.0e-05 comes back
# from MLflow as the word '1e-05' (str() of the float, which YAML does not read as a number). A second
# search (one seed) would double the file's minutes; the one-seed shape is checked on records below.
SEARCH = """
lab: mlp
metric: val_acc
fixed: {epochs: 2, batch_size: 128, lr: 0.01, optimizer: sgd, lr_schedule: constant}
sweeps:
  lr: [1.0e-05, 0.05]
variants:
  faithful: {faithful: true}
search: grid
scheduler: fifo
"""

METRICS = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]


@pytest.fixture(scope="module")
def search(ray_session, tiny_mnist, tmp_path_factory) -> Path:
    """The results root of one real search of two trials ("sweep", --repeats 2)."""
    root = tmp_path_factory.mktemp("frame") / "results"
    root.mkdir()
    run_search("mlp", SEARCH, tiny_mnist, root, "sweep", "--subset", "600", "--repeats", "2")
    return root


def summary(root: Path) -> dict:
    return json.loads((root / "sweep" / "summary.json").read_text())


def numeric(frame: pd.DataFrame) -> set[str]:
    """The columns of numbers (bools apart), leaving out those with no value at all (e.g. `error`)."""
    return {c for c in frame if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
            and frame[c].notna().any()}


def test_a_row_per_trial_a_typed_column_per_setting(search):
    record = summary(search)
    frame = trials_frame(record)
    assert list(frame["trial_id"]) == [t["trial_id"] for t in record["trials"]]
    assert list(frame.columns[:3]) == ["trial_id", "variant", "lr"]  # the varied settings first
    assert {"case", "repeats"}.isdisjoint(frame.columns)
    dtypes = frame.dtypes.astype(str).to_dict()
    assert {c: dtypes[c] for c in ("lr", "momentum", "epochs", "batch_size", "seed", "faithful", "nesterov")} == {
        "lr": "float64", "momentum": "float64", "epochs": "int64", "batch_size": "int64", "seed": "int64",
        "faithful": "bool", "nesterov": "bool"}
    for word in ("variant", "optimizer", "model", "loss", "status", "error", "mlflow_run_id", "checkpoint"):
        assert pd.api.types.is_string_dtype(frame[word]), word
    assert sorted(frame["lr"]) == [1e-05, 0.05] and set(frame["variant"]) == {"faithful"} and frame["faithful"].all()
    for column in (*map(metric_column, METRICS), "epoch_time_s", "samples_per_s", "wall_time_s"):
        assert frame[column].dtype == "float64", column
    assert (dtypes["epochs_run"], dtypes["best_epoch"], dtypes["best"]) == ("int64", "Int64", "bool")
    assert frame["best"].sum() == 1 and frame.loc[frame["best"], "trial_id"].item() == record["best"]["trial_id"]
    assert set(frame["status"]) == {"completed"} and frame["error"].isna().all()
    assert frame["checkpoint"].notna().sum() >= 1  # the best trial's checkpoint is kept
    assert "retries" not in frame  # no trial was retried (as the report's table: no column of zeros)


def test_metrics_are_the_records_values_in_the_columns_unit(search):
    record = summary(search)
    frame = trials_frame(record)
    assert "val_acc_pct" in frame and "val_acc" not in frame and "val_loss" in frame
    for row, trial in zip(frame.to_dict("records"), record["trials"]):
        for metric in METRICS:
            scale = 100 if metric.endswith("_acc") else 1
            assert row[metric_column(metric)] == scale * trial["best"][metric], metric
        assert (row["epoch_time_s"], row["samples_per_s"]) == (trial["best"]["epoch_time_s"], trial["best"]["samples_per_s"])
        assert row["wall_time_s"] == trial["wall_time_s"]
        assert (row["epochs_run"], row["best_epoch"], row["mlflow_run_id"]) == (
            trial["epochs_run"], trial["best_epoch"], trial["mlflow_run_id"])


def test_repeated_search_has_its_error_bars_as_numbers(search):
    record = summary(search)
    frame = trials_frame(record)
    assert "repeats" not in frame and len(frame) == 2
    for metric in ("val_acc", "test_acc"):
        for stat in ("mean", "std", "ci_low", "ci_high"):
            column = f"{metric}_pct_{stat}"
            assert frame[column].dtype == "float64", column
            assert list(frame[column]) == [100 * t["seed_stats"][metric][stat] for t in record["trials"]]
    assert frame["seeds_alive"].dtype == "int64" and list(frame["seeds_alive"]) == [2, 2]
    assert pd.api.types.is_string_dtype(frame["verdict"]) and frame["p"].dtype == "float64"
    best = frame[frame["best"]].iloc[0]
    assert best["verdict"] == "best" and math.isnan(best["p"]) and best["val_acc_pct_mean"] == pytest.approx(best["val_acc_pct"])
    other = frame[~frame["best"]].iloc[0]
    assert other["verdict"] in ("worse", "tied with best") and 0 <= other["p"] <= 1


def test_the_frames_are_the_same_read_back_from_mlflow(search):
    from reports.source import load_record

    stored = summary(search)
    rebuilt = load_record("sweep", str(search))
    assert rebuilt["source"] == "mlflow"
    # what there was to normalise: MLflow's params are text, and YAML reads '1e-05' as a word
    assert {t["config"]["lr"] for t in rebuilt["trials"]} == {"1e-05", 0.05}
    pd.testing.assert_frame_equal(trials_frame(rebuilt), trials_frame(stored))
    pd.testing.assert_frame_equal(curves_frame(rebuilt), curves_frame(stored))
    assert best_of(rebuilt) == best_of(stored)


def test_table_csv_is_the_frame(search):
    frame = trials_frame(summary(search))
    table = pd.read_csv(search / "sweep" / "report" / "table.csv")
    assert list(table.columns) == list(frame.columns)
    assert numeric(table) == numeric(frame)
    assert table["best"].dtype == "bool" and table["best"].sum() == 1
    pd.testing.assert_frame_equal(table[sorted(numeric(frame))], frame[sorted(numeric(frame))], check_dtype=False)


def test_curves_have_a_row_per_trial_and_epoch(search):
    record = summary(search)
    curves = curves_frame(record)
    assert list(curves.columns) == ["trial_id", "epoch", *map(metric_column, METRICS), "epoch_time_s"]
    assert len(curves) == sum(t["epochs_run"] for t in record["trials"]) == 4
    assert not curves.duplicated(["trial_id", "epoch"]).any()
    assert curves["epoch"].dtype == "int64" and all(curves[c].dtype == "float64" for c in curves.columns[2:])
    for trial in record["trials"]:
        own = curves[curves["trial_id"] == trial["trial_id"]]
        assert list(own["epoch"]) == trial["history"]["training_iteration"]
        assert list(own["val_acc_pct"]) == [100 * v for v in trial["history"]["val_acc"]]
        assert list(own["val_loss"]) == trial["history"]["val_loss"]


def test_best_of_says_what_to_load_and_how_it_was_set(search):
    record = summary(search)
    best = best_of(record)
    assert set(best) == {"trial_id", "config", "metrics", "epoch", "checkpoint", "mlflow_run_id"}
    assert best["trial_id"] == record["best"]["trial_id"] and best["epoch"] == record["best"]["epoch"]
    assert best["metrics"] == record["best"]["metrics"]  # raw: accuracies as fractions
    assert type(best["config"]["lr"]) is float and type(best["config"]["epochs"]) is int
    assert best["config"]["faithful"] is True and best["config"]["variant"] == "faithful"
    assert Path(best["checkpoint"]).is_dir() and best["mlflow_run_id"] == record["best"]["mlflow_run_id"]


# --- without Ray: what a real tiny search does not show ---------------------------------------


def _record(lab: str, configs: list[dict], *, failed: tuple[int, ...] = (), retries: tuple[int, ...] = ()) -> dict:
    """A one-seed record of trials with `configs`; trial i in `failed` errors before its first result."""
    trials = []
    for i, config in enumerate(configs):
        history = None if i in failed else pd.DataFrame({"training_iteration": [1, 2], **{m: [0.5, 0.6 + i / 100] for m in METRICS},
                                                         "epoch_time_s": [0.1, 0.1]})
        row = trial_row(trial_id=f"t_{i:05d}", config=config, history=history, failed=i in failed,
                        error="RuntimeError: loss is NaN" if i in failed else None, metric="val_acc", mode="max",
                        metrics=METRICS, varied=["lr"])
        row["retries"] = 1 if i in retries else 0
        trials.append(row)
    last = trials[-1]
    best = {"trial_id": last["trial_id"], "config": last["config"], "setting": last["setting"], "epoch": 2,
            "metrics": last["best"], "checkpoint": None, "mlflow_run_id": None}
    return {"lab": lab, "metric": "val_acc", "mode": "max", "metrics": METRICS, "varied": ["lr"], "repeats": 1,
            "best": best, "trials": trials}


def test_a_failed_trial_keeps_every_columns_type(tmp_path):
    record = _record("mlp", [{"lr": 0.1, "epochs": 2}, {"lr": 0.01, "epochs": 2}], failed=(0,), retries=(1,))
    frame = trials_frame(record)
    assert frame["best_epoch"].dtype == "Int64" and frame["best_epoch"].isna().tolist() == [True, False]
    assert frame["val_acc_pct"].dtype == "float64" and math.isnan(frame["val_acc_pct"][0])
    assert list(frame["status"]) == ["errored", "completed"] and frame["error"][0] == "RuntimeError: loss is NaN"
    assert list(frame["retries"]) == [0, 1] and frame["retries"].dtype == "int64"
    assert not any(c.endswith(("_mean", "_std")) or c in ("seeds_alive", "verdict", "p") for c in frame)  # one seed
    assert list(curves_frame(record)["trial_id"]) == ["t_00001", "t_00001"]  # no history, no rows
    trials_frame(record).to_csv(tmp_path / "table.csv", index=False)  # as reports/build.py writes table.csv
    with open(tmp_path / "table.csv") as f:  # and tests/test_cluster.py reads it back
        assert [int(row["retries"]) for row in csv.DictReader(f)] == [0, 1]


def test_a_lab_not_registered_here_is_typed_from_its_values():
    """A user's own lab read back without its module: each column gets the narrowest type all its
    values fit, from summary.json's values and from MLflow's text alike."""
    stored = _record("not_a_lab_here", [{"lr": 1e-05, "epochs": 2, "flag": True, "mode": "a", "ratio": 1},
                                        {"lr": 0.5, "epochs": 3, "flag": False, "mode": "b", "ratio": 0.5}])
    from_text = _record("not_a_lab_here", [{"lr": "1e-05", "epochs": 2, "flag": True, "mode": "a", "ratio": 1},
                                           {"lr": 0.5, "epochs": 3, "flag": False, "mode": "b", "ratio": 0.5}])
    frame = trials_frame(stored)
    assert frame[["lr", "epochs", "flag", "ratio"]].dtypes.astype(str).tolist() == ["float64", "int64", "bool", "float64"]
    assert pd.api.types.is_string_dtype(frame["mode"]) and list(frame["mode"]) == ["a", "b"]
    pd.testing.assert_frame_equal(trials_frame(from_text), frame)
    assert best_of(from_text)["config"] == {"lr": 0.5, "epochs": 3, "flag": False, "mode": "b", "ratio": 0.5}


def test_the_typed_record_writes_the_same_json_and_reads_back_as_statuses(tmp_path):
    """reports.record.Status: summary.json keeps its words; tune_lab.Result reads them back as Status members,
    and a word no tune-lab wrote is refused rather than drawn as a completed trial."""
    from reports.record import Status, typed
    from tune_lab.result import Result

    record = _record("mlp", [{"lr": 0.5, "epochs": 2}, {"lr": 0.1, "epochs": 2}, {"lr": 0.01, "epochs": 3}], failed=(0,))
    text = json.dumps(record)
    assert [t["status"] for t in json.loads(text)["trials"]] == ["errored", "completed", "stopped early"]
    assert '"status": "stopped early"' in text and "Status" not in text  # plain JSON words on disk
    result = Result(json.loads(text), str(tmp_path))
    assert [t["status"] for t in result.record["trials"]] == [Status.ERRORED, Status.COMPLETED, Status.STOPPED_EARLY]
    assert all(isinstance(t["status"], Status) for t in result.record["trials"])
    assert json.dumps(result.record) == text  # read back and written again: the same file
    assert list(result.table["status"]) == ["errored", "completed", "stopped early"]
    assert result.best is not None and result.best.trial_id == "t_00002" and result.best.epoch == 2
    broken = json.loads(text)
    broken["trials"][0]["status"] = "exploded"
    with pytest.raises(ValueError, match="exploded"):
        typed(broken)
