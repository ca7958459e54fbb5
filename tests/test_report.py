"""Every trial in MLflow, and the report: built at the end, rebuilt later, read in a browser."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from html.parser import HTMLParser

import pytest

from tests.browser import rendered_dom, requires_chromium, screenshot
from tune_lab.cli import main

RANDOM_SEARCH = """
description: lr and momentum at random, for the report's scatter and importance plots
lab: mlp
metric: val_acc
fixed: {epochs: 3, batch_size: 128, optimizer: sgd, lr_schedule: constant}
params:
  lr: {loguniform: [1.0e-6, 0.3]}
  momentum: {uniform: [0.0, 0.9]}
search: random
num_samples: 6
scheduler: {asha: {grace_period: 1, reduction_factor: 2}}
"""


def start_server(command: list[str]) -> subprocess.Popen:
    """A server in its own process group, so the test can stop all of it."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def stop_server(server: subprocess.Popen) -> str:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        out, _ = server.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        out, _ = server.communicate()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def finished_search(ray_session, tiny_mnist, tmp_path_factory):
    """One real random search on tiny data, with its results root."""
    root = tmp_path_factory.mktemp("report")
    space = root / "random.yaml"
    space.write_text(textwrap.dedent(RANDOM_SEARCH))
    code = main(["mlp", "--search", str(space), "--data-dir", str(tiny_mnist), "--storage", str(root / "results"),
                 "--experiment", "rand", "--seed", "1"])
    assert code == 0
    return root / "results"


def test_report_files_and_mlflow_artifacts(finished_search):
    report = finished_search / "rand" / "report"
    for name in ("report.md", "report.html", "table.csv", "best_curves.png", "all_trials.png", "params.png", "importance.png"):
        assert (report / name).is_file(), name
    md = (report / "report.md").read_text()
    assert "on mnist" in md.splitlines()[0] and "| setting" in md and "lr=" in md
    summary = json.loads((finished_search / "rand" / "summary.json").read_text())
    assert len(summary["trials"]) == 6

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    parent = summary["mlflow"]["parent_run_id"]
    artifacts = {a.path for a in client.list_artifacts(parent, "report")}
    assert "report/report.html" in artifacts and "report/table.csv" in artifacts
    assert [a.path for a in client.list_artifacts(parent, "best_checkpoint")] == ["best_checkpoint/checkpoint.pt"]
    best_run = client.get_run(summary["best"]["mlflow_run_id"])
    assert best_run.data.tags.get("tune_lab.best") == "true"
    others = [t["mlflow_run_id"] for t in summary["trials"] if t["trial_id"] != summary["best"]["trial_id"]]
    assert all(not client.list_artifacts(run_id) for run_id in others), "only the best trial's checkpoint is kept"


def test_report_rebuilds_in_a_fresh_process_from_mlflow(finished_search):
    folder = finished_search / "rand" / "report"
    before = (folder / "table.csv").read_text()
    (folder / "table.csv").unlink()
    env = {**os.environ, "TUNE_LAB_HOME": str(finished_search)}
    done = subprocess.run([sys.executable, "-m", "tune_lab", "report", "rand"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "read from mlflow" in done.stdout
    assert (folder / "table.csv").read_text() == before


def test_report_falls_back_to_summary_json_when_mlflow_is_unreachable(finished_search, capsys):
    dead = f"http://127.0.0.1:{free_port()}"
    code = main(["report", str(finished_search / "rand"), "--tracking-uri", dead])
    out = capsys.readouterr().out
    assert code == 0
    assert "read from summary.json" in out
    assert (finished_search / "rand" / "report" / "report.html").is_file()


def test_resume_of_a_finished_search_says_so_without_starting_ray(finished_search):
    from tests.test_cli import run_cli

    folder = finished_search / "rand"
    assert json.loads((folder / "summary.json").read_text())["complete"] is True
    before = {p.name: p.stat().st_mtime_ns for p in [folder / "summary.json", *(folder / "report").iterdir()]}
    done = run_cli("resume", str(folder))
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"tune-lab: {folder}: the search is already complete (6 trials); nothing to resume." in done.stdout
    assert "ray" not in done.stderr.split("HEAVY=")[1]  # Ray was not even imported
    assert {p.name: p.stat().st_mtime_ns for p in [folder / "summary.json", *(folder / "report").iterdir()]} == before


def test_the_readmes_example_table_has_the_columns_the_real_table_prints(finished_search):
    """The main job's example output in the README against the table of a real finished search
    (same lab, one seed, MNIST-shaped data: the same columns)."""
    import re
    from pathlib import Path

    from reports.table import comparison_rows

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    main_job = readme.split("## The main job", 1)[1]
    header = re.search(r"^\| setting .*\|$", main_job, re.M).group(0)
    columns = [c.strip() for c in header.strip("|").split("|")]
    summary = json.loads((finished_search / "rand" / "summary.json").read_text())
    assert columns == list(comparison_rows(summary)[0])


def test_unknown_experiment_is_a_clear_error(finished_search, capsys):
    assert main(["report", "no-such-search", "--storage", str(finished_search)]) == 2
    assert "no-such-search" in capsys.readouterr().err


@requires_chromium
def test_html_report_shows_table_and_curves_in_chromium(finished_search):
    html = finished_search / "rand" / "report" / "report.html"
    dom = rendered_dom(html.as_uri())
    assert "<table" in dom and "lr=" in dom
    assert dom.count("data:image/png;base64,") >= 4
    screenshot(html.as_uri(), finished_search / "report.png")


@requires_chromium
def test_mlflow_ui_lists_the_searchs_runs(finished_search):
    port = free_port()
    ui = start_server([sys.executable, "-m", "tune_lab", "ui", "--storage", str(finished_search), "--port", str(port)])
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", seconds=90)
        summary = json.loads((finished_search / "rand" / "summary.json").read_text())
        url = f"http://127.0.0.1:{port}/#/experiments/{summary['mlflow']['experiment_id']}/runs"
        for budget in (20_000, 40_000, 80_000):  # a loaded machine may need longer to fetch the runs
            dom = rendered_dom(url, budget_ms=budget)
            if ">rand<" in dom:
                break
        assert ">rand<" in dom  # the search's parent run, listed in the runs table
        assert "<strong>7</strong> matching runs" in dom  # the parent and its six trials
        screenshot(url, finished_search / "mlflow-ui.png", budget_ms=30000)
    finally:
        out = stop_server(ui)
    assert f"http://127.0.0.1:{port}" in out


def test_search_logs_to_a_real_tracking_server(ray_session, tiny_mnist, tmp_path):
    port = free_port()
    server = start_server(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "art")],
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_for_http(f"{uri}/health", seconds=90)
        code = main(["mlp", "--search", "optimizer", "--set", "epochs=1", "--data-dir", str(tiny_mnist),
                     "--storage", str(tmp_path / "results"), "--tracking-uri", uri, "--experiment", "served"])
        assert code == 0
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        (parent,) = client.search_runs([client.get_experiment_by_name("mlp").experiment_id], "tags.mlflow.runName = 'served'")
        children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert len(children) == 3
        assert {c.data.params["optimizer"] for c in children} == {"sgd", "adam", "adadelta"}
        assert "report/report.html" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
        assert not (tmp_path / "results" / "mlflow.db").exists(), "nothing went to the embedded store"
    finally:
        stop_server(server)


SWEEP_SEARCH = """
description: a miniature of lab 1's table
lab: mlp
metric: val_acc
fixed: {epochs: 2, batch_size: 128, loss: cross_entropy}
sweeps:
  epochs: [1, 2]
  loss: [cross_entropy, mse]
variants:
  faithful: {faithful: true, lr_schedule: constant}
  corrected: {faithful: false}
search: grid
"""


def test_sweep_table_puts_the_labs_figures_beside_each_variant(ray_session, tiny_mnist, tmp_path, capsys):
    space = tmp_path / "sweep.yaml"
    space.write_text(textwrap.dedent(SWEEP_SEARCH))
    code = main(["mlp", "--search", str(space), "--data-dir", str(tiny_mnist), "--storage", str(tmp_path), "--experiment", "sw"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((tmp_path / "sw" / "summary.json").read_text())
    assert len(summary["trials"]) == 6  # (1 base + epochs=1 + mse) x 2 variants
    epochs = {(t["config"]["variant"], t["config"]["epochs"], t["config"]["loss"]): t["epochs_run"] for t in summary["trials"]}
    assert epochs[("faithful", 1, "cross_entropy")] == 1 and epochs[("corrected", 2, "mse")] == 2
    assert all(t["status"] == "completed" for t in summary["trials"])  # a 1-epoch case is not "stopped early"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    assert {client.get_run(t["mlflow_run_id"]).data.tags["tune_lab.status"] for t in summary["trials"]} == {"completed"}
    from reports.table import sweep_rows

    rows = sweep_rows(summary)
    assert [(r["sweep"], r["setting"]) for r in rows] == [("epochs", "1"), ("epochs", "2"), ("loss", "cross_entropy"), ("loss", "mse")]
    # MNIST-shaped data, 1-2 epochs: not the lab's experiment, so none of its figures (see test_lab_figures_*)
    assert summary["subset"] is None and all("lab's test %" not in r for r in rows)
    assert all(isinstance(r["faithful test acc %"], float) and isinstance(r["corrected test acc %"], float) for r in rows)
    # the base setting is one trial, shown in both the epochs=2 and the loss=cross_entropy rows
    assert rows[1]["corrected test acc %"] == rows[2]["corrected test acc %"]
    from reports.table import setting_label

    labels = {setting_label(t, summary) for t in summary["trials"]}
    assert {"faithful: base (epochs=2, loss=cross_entropy)", "corrected: epochs=1", "corrected: loss=mse"} <= labels
    assert "lab's test" not in out and "published" not in out
    report = tmp_path / "sw" / "report"
    md_tables = md_table_cells((report / "report.md").read_text())
    assert md_tables == html_table_cells((report / "report.html").read_text())
    assert [row[:2] for row in md_tables[0][1:]] == [[r["sweep"], r["setting"]] for r in rows]  # the sweep table first
    assert len(md_tables[1]) == 1 + 6  # then every trial


def test_a_resumed_trials_rerun_epochs_replace_their_first_reports():
    import pandas as pd

    from reports.record import trial_row

    # reported epochs 1-3, killed, resumed from the kept (best) checkpoint of epoch 2: epoch 3 comes again
    history = pd.DataFrame({
        "training_iteration": [1, 2, 3, 3, 4],
        "val_acc": [0.50, 0.90, 0.70, 0.75, 0.95],
        "epoch_time_s": [1.0, 1.0, 1.0, 2.0, 2.0],
    })
    row = trial_row(trial_id="t", config={"epochs": 4}, history=history, failed=False, error=None,
                    metric="val_acc", mode="max", metrics=["val_acc"], varied=[])
    assert row["history"]["training_iteration"] == [1, 2, 3, 4]
    assert row["history"]["val_acc"] == [0.50, 0.90, 0.75, 0.95]  # epoch 3 as the model that went on had it
    assert row["best_epoch"] == 4 and row["best"]["val_acc"] == 0.95
    assert row["epochs_run"] == 4 and row["status"] == "completed" and row["wall_time_s"] == 6.0


LAB1 = {"model": "mlp", "epochs": 20, "batch_size": 256, "lr": 0.005, "loss": "cross_entropy", "optimizer": "adam"}


def _trial(trial_id: str, setting: dict, **config) -> dict:
    return {"trial_id": trial_id, "setting": setting, "config": {**LAB1, **setting, **config}, "status": "completed",
            "epochs_run": 1, "best_epoch": 1, "best": {"val_acc": 0.9, "test_acc": 0.89}}


def test_lab_figures_only_beside_the_labs_experiment():
    """Lab 1's figures (Fashion-MNIST, all images, 20 epochs ...) beside a run like it, nowhere else."""
    from reports.table import LAB_COLUMN, comparison_rows, format_table

    record = {"lab": "mlp", "search": "optimizer", "dataset": "fashion_mnist", "metric": "val_acc", "mode": "max",
              "metrics": ["val_acc", "test_acc"], "best": {"trial_id": "a"}, "fixed": {}, "subset": None,
              "trials": [_trial("a", {"optimizer": "sgd"}), _trial("b", {"optimizer": "adadelta"}, epochs=1)]}
    rows = comparison_rows(record)
    assert rows[0][LAB_COLUMN] == 89.16 and rows[1][LAB_COLUMN] == ""  # a one-epoch run is not the lab's
    assert "lab's test acc %: the test accuracy lab 1 published for the same setting: Fashion-MNIST" in format_table(record)
    for other in ({"dataset": "mnist"}, {"dataset": "digits"}, {"subset": 5000}):
        shown = format_table({**record, **other})
        assert all(LAB_COLUMN not in r for r in comparison_rows({**record, **other})) and "published" not in shown, other


def test_lab_figures_in_a_sweep_table_follow_each_rows_setting():
    """`table2 --set epochs=1`: only the epochs sweep's rows run the lab's setting (10 / 20 / 40 epochs)."""
    from reports.table import format_table, sweep_rows

    fixed = {**LAB1, "epochs": 1}
    trials = [_trial(f"e{n}", {"epochs": n, "loss": "cross_entropy"}) for n in (10, 20, 40)]
    trials += [_trial(f"l{loss}", {"epochs": 1, "loss": loss}) for loss in ("cross_entropy", "mse")]
    record = {"lab": "mlp", "search": "table2", "dataset": "fashion_mnist", "metric": "val_acc", "mode": "max",
              "metrics": ["val_acc", "test_acc"], "best": {"trial_id": "e10"}, "fixed": fixed,
              "sweeps": {"epochs": [10, 20, 40], "loss": ["cross_entropy", "mse"]}, "trials": trials}
    rows = sweep_rows(record)
    assert [r["lab's test %"] for r in rows] == [87.96, 88.54, 89.29, "", ""]
    assert "lab 1 published" in format_table(record)
    record["dataset"] = "mnist"
    assert all("lab's test %" not in r for r in sweep_rows(record)) and "lab 1 published" not in format_table(record)


def md_table_cells(md: str) -> list[list[list[str]]]:
    """Each '|' table of a report.md as rows of cell texts, the header first (without the |---| line)."""
    tables, rows = [], []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            if not set(line) <= set("|-: "):
                rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            tables, rows = [*tables, rows], []
    return tables


def html_table_cells(page: str) -> list[list[list[str]]]:
    """Each <table> of a report.html as rows of the text a browser shows in each cell, the header first."""
    tables: list[list[list[str]]] = []

    class Cells(HTMLParser):
        cell: list[str] | None = None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                tables.append([])
            elif tag == "tr":
                tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                tables[-1][-1].append("".join(self.cell).strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    Cells().feed(page)
    return tables


def _sweep_record(**changes) -> dict:
    """Lab 1's epochs and loss sweeps, one variant; the epochs rows are the lab's experiment."""
    trials = [_trial(f"e{n}", {"epochs": n, "loss": "cross_entropy"}) for n in (10, 20, 40)]
    trials += [_trial("mse", {"epochs": 20, "loss": "mse"})]
    trials[1]["best"]["test_acc"] = 0.8912  # a value whose table cell is 89.12
    best = {"trial_id": "e10", "epoch": 1, "metrics": trials[0]["best"], "config": trials[0]["config"]}
    return {"lab": "mlp", "search": "table2", "dataset": "fashion_mnist", "metric": "val_acc", "mode": "max",
            "metrics": ["val_acc", "test_acc"], "best": best, "fixed": dict(LAB1), "subset": None,
            "sweeps": {"epochs": [10, 20, 40], "loss": ["cross_entropy", "mse"]}, "trials": trials, **changes}


def test_report_md_and_html_show_the_same_tables_of_a_sweep_search(tmp_path):
    """A sweep search's lab table (with its notes) and then its table of trials, the same cells in both reports."""
    from reports.build import build_report
    from reports.table import report_tables

    build_report(_sweep_record(), tmp_path)
    md, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    (comparison, sweep_rows, notes), (trials, trial_rows, _) = report_tables(_sweep_record())
    assert (comparison, trials) == ("Comparison", "Trials") and f"## {trials}" in md and f"<h2>{trials}</h2>" in page
    tables = md_table_cells(md)
    assert tables == html_table_cells(page)
    assert [len(t) for t in tables] == [1 + len(sweep_rows), 1 + len(trial_rows)] == [1 + 5, 1 + 4]
    assert tables[0][1] == ["epochs", "10", "87.96", "89.00"] and tables[0][2][-1] == "89.12"
    assert notes and all(note in md and f"<p>{note}</p>".replace("'", "&#39;") in page for note in notes)


def test_report_html_escapes_what_it_shows(tmp_path):
    """A search's description, a trial's error and the lab's text appear as text, never as markup."""
    from reports.build import build_report

    record = _sweep_record(description="<b>& 'the lab's' table")
    record["trials"][3].update(status="errored", error="ValueError: lr < 0 & <script>alert(1)</script>")
    build_report(record, tmp_path, extra_text="## Samples <i>\n\n```\nx < y && z\n```\nsee <a href=x>here</a>")
    page = (tmp_path / "report.html").read_text()
    for raw in ("<b>&", "<script>alert", "<i>", "<a href", "x < y"):
        assert raw not in page, raw
    assert page.count("<script>") == 1  # the report's own (its table's sorting), never the error's
    assert "<b>Question</b>: &lt;b&gt;&amp; " in page
    assert "failed: ValueError: lr &lt; 0 &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<h2>Samples &lt;i&gt;</h2>" in page and "<pre><code>x &lt; y &amp;&amp; z\n</code></pre>" in page
    assert "<p>see &lt;a href=x&gt;here&lt;/a&gt;</p>" in page
    assert "- **Question**: <b>& 'the lab's' table" in (tmp_path / "report.md").read_text()  # Markdown is not HTML-escaped
