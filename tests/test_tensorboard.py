"""TensorBoard: every search writes one run per trial, and `tune-lab tensorboard` serves them."""
from __future__ import annotations

import json
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import run_search
from tests.test_report import free_port, start_server, stop_server
from tune_lab.cli import main
from tune_lab.tensorboard import FOLDER, EventFiles

SEARCH = """
description: two optimizers, two epochs
lab: mlp
metric: val_acc
mode: max
fixed: {epochs: 2, batch_size: 128, lr: 0.01}
params:
  optimizer: {grid: [sgd, adam]}
search: grid
scheduler: fifo
"""
EPOCH_METRICS = {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "epoch_time_s"}


@pytest.fixture(scope="module")
def finished(ray_session, tiny_mnist, tmp_path_factory) -> Path:
    """A finished two-trial search (no flag asks for TensorBoard); its experiment folder."""
    root = tmp_path_factory.mktemp("tb") / "results"
    run_search("mlp", SEARCH, tiny_mnist, root, "tb-optimizer")
    return root / "tb-optimizer"


def read_run(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0}).Reload()


def test_one_run_per_trial_named_by_its_setting(finished):
    summary = json.loads((finished / "summary.json").read_text())
    runs = {p.name: p for p in (finished / FOLDER).iterdir()}
    assert sorted(runs) == ["optimizer=adam", "optimizer=sgd"]
    for trial in summary["trials"]:
        run = read_run(runs[f"optimizer={trial['setting']['optimizer']}"])
        assert EPOCH_METRICS <= set(run.Tags()["scalars"])
        assert not {"pid", "timestamp", "time_total_s"} & set(run.Tags()["scalars"])  # Ray's bookkeeping stays out
        val_acc = run.Scalars("val_acc")
        assert [e.step for e in val_acc] == [1, 2]  # step = epoch, as in MLflow
        assert [e.value for e in val_acc] == pytest.approx(trial["history"]["val_acc"])


def test_hparams_hold_the_searched_parameter_and_the_metrics(finished):
    from tensorboard.plugins.hparams import metadata

    for name in ("optimizer=adam", "optimizer=sgd"):
        content = read_run(finished / FOLDER / name).PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        assert dict(start.hparams)["optimizer"].string_value == name.split("=")[1]
        experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
        assert [h.name for h in experiment.hparam_infos] == ["optimizer"]
        # the searched metric first, then the table's (the HParams view ticks the first five)
        assert [m.name.tag for m in experiment.metric_infos] == ["val_acc", "train_acc", "test_acc", "train_loss",
                                                                 "val_loss", "test_loss"]
        end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
        assert end.status == 1  # STATUS_SUCCESS


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_tensorboard_serves_one_run_per_trial_on_localhost(finished):
    port = free_port()
    server = start_server([sys.executable, "-m", "tune_lab", "tensorboard", finished.name,
                           "--storage", str(finished.parent), "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        tags, deadline = {}, time.monotonic() + 60
        while time.monotonic() < deadline:  # TensorBoard answers first, then loads the runs
            try:
                tags = get_json(f"{base}/data/plugin/scalars/tags")
            except OSError:
                pass
            if len(tags) == 2 and all(EPOCH_METRICS <= set(t) for t in tags.values()):
                break
            time.sleep(0.5)
        assert sorted(tags) == ["optimizer=adam", "optimizer=sgd"]
        assert all(EPOCH_METRICS <= set(t) for t in tags.values())
        query = urllib.parse.urlencode({"run": "optimizer=adam", "tag": "val_acc"})
        points = get_json(f"{base}/data/plugin/scalars/scalars?{query}")
        assert [step for _, step, _ in points] == [1, 2]
    finally:
        out = stop_server(server)
    assert out.splitlines()[:3] == [
        f"TensorBoard for tb-optimizer (2 trials): {base}  (Ctrl-C stops it)",
        f"  val_acc per epoch, unsmoothed: {base}/#scalars&tagFilter=val_acc&_smoothingWeight=0",
        f"  parameters and metrics of every trial: {base}/#hparams",
    ]


def test_a_search_without_event_files_is_refused_in_one_line(tmp_path, capsys):
    old = tmp_path / "results" / "old-search"
    old.mkdir(parents=True)
    (old / "summary.json").write_text("{}")
    assert main(["tensorboard", "old-search", "--storage", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("tune-lab: error: old-search: no TensorBoard event files in ")
    assert main(["tensorboard", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "nowhere: no search there" in err[0]


def test_a_busy_port_is_refused_before_tensorboard_starts(finished, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["tensorboard", str(finished), "--port", str(port)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"--port {port}: 127.0.0.1:{port} is already in use" in err[0]


HEADER = {"varied": ["lr"], "fixed": {}, "sweeps": None, "metric": "val_acc", "metrics": ["val_acc"]}


def test_a_resumed_trial_appends_to_its_run_and_its_rerun_epochs_replace_the_first(tmp_path):
    """A driver killed after epoch 3, whose trial goes on from its epoch-1 checkpoint."""
    trial = SimpleNamespace(trial_id="abc_00000", config={"lr": 0.1, "epochs": 4})
    first = EventFiles(str(tmp_path), HEADER)
    first.on_trial_start(0, [], trial)
    for epoch in (1, 2, 3):
        first.on_trial_result(0, [], trial, {"training_iteration": epoch, "val_acc": epoch / 10})
    first.on_experiment_end([])  # the kill: no end of session
    time.sleep(1.1)  # the second driver's event file sorts after the first (names carry the second)
    second = EventFiles(str(tmp_path), HEADER)
    second.on_trial_start(0, [], trial)
    for epoch in (2, 3, 4):
        second.on_trial_result(0, [], trial, {"training_iteration": epoch, "val_acc": epoch / 10 + 0.5})
    second.on_trial_complete(0, [], trial)
    assert [p.name for p in (tmp_path / FOLDER).iterdir()] == ["lr=0.1"]
    assert len(list((tmp_path / FOLDER / "lr=0.1").glob("events.out.tfevents.*"))) == 2
    points = read_run(tmp_path / FOLDER / "lr=0.1").Scalars("val_acc")
    assert [(e.step, round(e.value, 3)) for e in points] == [(1, 0.1), (2, 0.7), (3, 0.8), (4, 0.9)]


def test_trials_of_one_setting_get_numbered_runs(tmp_path):
    callback = EventFiles(str(tmp_path), HEADER)
    for trial_id in ("t_00000", "t_00001"):
        trial = SimpleNamespace(trial_id=trial_id, config={"lr": 0.1})
        callback.on_trial_start(0, [], trial)
        callback.on_trial_error(0, [], trial)
    assert sorted(p.name for p in (tmp_path / FOLDER).iterdir()) == ["lr=0.1", "lr=0.1 #2"]
