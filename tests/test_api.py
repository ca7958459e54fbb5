"""tune-lab as a Python library (docs/python.md): the command line's searches as functions returning a Result."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import tune_lab
from tests.conftest import kill_when
from tune_lab.cli import main

SMALL = """
description: two settings, two epochs
lab: mlp
fixed: {epochs: 2, batch_size: 64, optimizer: adam}
params:
  lr: {grid: [0.01, 0.001]}
search: grid
scheduler: fifo
"""


def one_line_error(argv: list[str], capsys) -> str:
    """What the command line prints for bad input (and that it exits 2)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err.removeprefix("tune-lab: error: ")


@pytest.mark.parametrize("call, argv", [
    (dict(lab="mlp", search="nosuch"), ["mlp", "--search", "nosuch"]),
    (dict(lab="mlp", search="optimizer", set={"lr": -1}), ["mlp", "--search", "optimizer", "--set", "lr=-1"]),
    (dict(lab="mlp", search="optimizer", repeats=0), ["mlp", "--search", "optimizer", "--repeats", "0"]),
], ids=["unknown search", "bad --set value", "bad repeats"])
def test_bad_input_raises_the_command_lines_one_line(call, argv, capsys, tmp_path):
    expected = one_line_error(argv, capsys)
    with pytest.raises(tune_lab.TuneLabError) as error:
        tune_lab.search(call.pop("lab"), call.pop("search"), storage=str(tmp_path / "r"), **call)
    assert str(error.value) == expected
    assert isinstance(error.value, ValueError)
    assert not (tmp_path / "r").exists()  # nothing written


def test_unknown_lab_and_options_are_refused_before_anything_starts(tmp_path):
    with pytest.raises(tune_lab.TuneLabError, match="unknown lab 'nope'; known labs: ae, cgan"):
        tune_lab.search("nope", "optimizer")
    with pytest.raises(tune_lab.TuneLabError, match="unknown option 'subsett'; allowed: .*subset"):
        tune_lab.search("mlp", "optimizer", subsett=10)
    with pytest.raises(tune_lab.TuneLabError, match="subset=-3: -3 must be at least 1"):
        tune_lab.search("mlp", "optimizer", subset=-3)
    with pytest.raises(tune_lab.TuneLabError, match="scheduler='hyperband': expected one of asha, promotion, fifo"):
        tune_lab.search("mlp", "optimizer", scheduler="hyperband")
    with pytest.raises(tune_lab.TuneLabError, match="deterministic='yes': expected True or False"):
        tune_lab.search("mlp", "optimizer", deterministic="yes")
    with pytest.raises(tune_lab.TuneLabError, match="unknown lab 'nope'"):
        tune_lab.searches("nope")
    assert "optimizer" in tune_lab.searches("mlp") and "mlp" in tune_lab.labs()


def test_two_searches_in_one_session_reuse_ray_and_load_gives_the_same_result(ray_session, tiny_mnist, tmp_path):
    space = tmp_path / "small.yaml"
    space.write_text(textwrap.dedent(SMALL))
    root = str(tmp_path / "results")
    first = tune_lab.search("mlp", str(space), data_dir=str(tiny_mnist), storage=root, experiment="first")
    assert ray_session.is_initialized()  # the session's Ray, still up for the next search
    second = tune_lab.search("mlp", str(space), data_dir=str(tiny_mnist), storage=root, experiment="second",
                             set={"epochs": 1}, progress="table")
    assert ray_session.is_initialized()
    assert (first.experiment, second.experiment) == ("first", "second")
    assert not first.interrupted and len(first.table) == 2 and first.table["best"].sum() == 1
    assert first.table["lr"].tolist() == [0.01, 0.001] and (second.table["epochs_run"] == 1).all()
    best = first.best
    assert best.config["lr"] in (0.01, 0.001) and best.epoch in (1, 2) and Path(best.checkpoint).is_dir()
    assert first.report.html.is_file() and first.report.md.is_file()
    assert set(first.curves["trial_id"]) == set(first.table["trial_id"]) and len(first.curves) == 4
    loaded = tune_lab.load("first", storage=root)
    pd.testing.assert_frame_equal(loaded.table, first.table)
    assert list(first.overview().columns) == ["trial_id", "lr", "train_acc_pct", "val_acc_pct", "test_acc_pct",
                                              "epochs_run", "best_epoch", "status", "best"]
    assert "<table" in first._repr_html_() and "best trial curves" in first._repr_html_()


def test_an_interrupted_search_returns_and_resume_finishes_it(ray_session, tiny_mnist, tmp_path):
    """Jupyter's stop button is a SIGINT to the kernel: the trials stop, the Result says so, resume goes on."""
    space = tmp_path / "long.yaml"
    space.write_text(textwrap.dedent(SMALL).replace("epochs: 2", "epochs: 30").replace("[0.01, 0.001]", "[0.01, 0.001, 0.002]"))
    root = tmp_path / "results"
    script = (f"import sys, tune_lab; r = tune_lab.search('mlp', {str(space)!r}, data_dir={str(tiny_mnist)!r}, "
              f"storage={str(root)!r}, experiment='stopped', max_concurrent=1, progress='table'); "
              f"print('RESULT', r.interrupted, r.folder, file=sys.stderr, flush=True)")
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    folder = root / "stopped"

    def under_way() -> bool:
        return any((t / "result.json").is_file() and (t / "result.json").stat().st_size > 0 for t in folder.glob("run_trial_*"))

    err = kill_when(driver, under_way, "the first trial reported", timeout=240, every=0.2, how=signal.SIGINT)
    assert f"RESULT True {folder}" in err, err[-2000:]
    resumed = tune_lab.resume(str(folder))
    assert not resumed.interrupted
    assert (resumed.table["status"] == "completed").all() and len(resumed.table) == 3
