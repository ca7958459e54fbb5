"""Lab 1's linear regression (trainables/linreg.py): it recovers the known line within lab 1's 0.05,
resumes from a checkpoint as if never stopped, and its report sets the fit beside the truth."""
from __future__ import annotations

import pytest
import torch

from trainables import linreg
from labspec.hparams import LinRegConfig


def trainer(**settings) -> linreg.Trainer:
    torch.manual_seed(0)  # the initial weights, as the shared loop seeds them
    return linreg.Trainer(LinRegConfig(**settings), linreg.load_data("synthetic"), torch.device("cpu"))


def test_the_data_lies_on_the_labs_line():
    data = linreg.load_data("synthetic")
    assert data.split_sizes == {"train": 1000, "val": 200}
    x, y = data.x["train"], data.y["train"]
    residual = y - (x @ torch.tensor(linreg.TRUE_W).numpy() + linreg.TRUE_B)
    assert abs(residual.std() - linreg.NOISE) < 0.002  # only the noise is off the line
    assert linreg.load_data("synthetic", subset=100).split_sizes == {"train": 100, "val": 200}
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; known: synthetic"):
        linreg.load_data("mnist")


def test_a_resumed_fit_continues_as_the_uninterrupted_one():
    """The checkpoint holds the model, SGD, the batch order's generator and the step losses."""
    whole = trainer(epochs=2)
    whole.train_epoch()
    whole.train_epoch()
    first = trainer(epochs=2)
    first.train_epoch()
    resumed = trainer(epochs=2)
    resumed.load_state_dict(first.state_dict())
    resumed.train_epoch()
    assert resumed.step_losses == whole.step_losses and len(whole.step_losses) == 200
    assert torch.equal(resumed.model.weight, whole.model.weight) and torch.equal(resumed.model.bias, whole.model.bias)


def test_the_lr_search_recovers_the_line_and_its_report_says_so(ray_session, tmp_path):
    """`tune-lab linreg --search lr`: real Ray trials; at the lab's rate the fit is within 0.05, at a tenth of it not."""
    root = tmp_path / "results"
    from tune_lab.cli import main

    assert main(["linreg", "--search", "lr", "--storage", str(root), "--experiment", "fit"]) == 0
    import json

    summary = json.loads((root / "fit" / "summary.json").read_text())
    trials = {t["setting"]["lr"]: t for t in summary["trials"]}
    assert sorted(trials) == [0.003, 0.03, 0.3]
    assert all(t["status"] == "completed" and t["epochs_run"] == 3 for t in trials.values())
    assert summary["metric"] == "val_loss" and summary["mode"] == "min"  # the lab's default metric
    assert trials[0.03]["best"]["w_error"] < 0.05 and trials[0.03]["best"]["b_error"] < 0.05
    assert trials[0.003]["best"]["b_error"] > 0.05  # 300 steps at lr 0.003 are too few to reach b = 4.2
    assert summary["best"]["setting"]["lr"] in (0.03, 0.3)

    report = root / "fit" / "report"
    md = (report / "report.md").read_text()
    assert "## Recovered line against the true one" in md
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| w_") or line.startswith("| b ")}
    assert set(rows) == {"w_1", "w_2", "b"} and all(line.rstrip().endswith("| yes |") for line in rows.values())
    assert "| w_1 | 2 |" in rows["w_1"] and "| b | 4.2 |" in rows["b"]
    html = (report / "report.html").read_text()  # the table as a table, not lines of pipes
    assert "<th>parameter</th>" in html and "<td>w_1</td>\n<td>2</td>" in html and "| w_1 |" not in html
    png = (report / "linreg_fit.png").read_bytes()
    assert png.startswith(b"\x89PNG") and "](linreg_fit.png)" in md


def test_the_report_judges_a_fit_against_the_tolerance(tmp_path):
    """A fit stopped after a few steps is far from the line: its table says no."""
    from trainables.loop import CHECKPOINT_FILE

    early = trainer(epochs=1, lr=0.001)
    early.train_epoch()
    data = linreg.load_data("synthetic")
    torch.save({"state": early.state_dict(), "epoch": 1, "data": data.checkpoint_info()}, tmp_path / CHECKPOINT_FILE)
    text = linreg.report_text(str(tmp_path), data)
    assert "| b | 4.2 |" in text and text.count("| no |") >= 1 and "Not every parameter is within 0.05" in text
    (caption, name), = linreg.report_figures(str(tmp_path), data, tmp_path)
    assert name == "linreg_fit.png" and (tmp_path / name).stat().st_size > 1000 and "acceptance 0.05" in caption
