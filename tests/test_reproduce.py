"""`tune-lab reproduce`: plans are checked before anything runs, a dry run prints every section with an
estimate, and a plan runs end to end into one combined report, resuming after its driver is killed
without rerunning a finished section."""
from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from pathlib import Path

import pytest

from tests.conftest import kill_when, start_killable
from labspec.registry import LABS
from tune_lab.cli import main
from tune_lab.reproduce import load_plan, plan_names
from tune_lab.spaces import SearchSpaceError, available_searches

LAB_PLANS = ["lab1", "lab2", "lab3", "lab4", "lab5"]
EPOCHS = 12  # the second section's: long enough to be killed in the middle


def test_every_shipped_plan_validates_and_its_searches_load():
    assert plan_names() == LAB_PLANS
    for name in LAB_PLANS:
        for quick in (False, True):
            plan = load_plan(name, quick=quick)
            assert plan.title and plan.question and plan.sections
            for section in plan.sections:
                assert section.title and section.question
                assert section.search.name in available_searches(section.lab)  # a shipped search, not a copy
    assert "reproduce" not in available_searches("mlp")  # the plans' folder is no lab's


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_dry_run_prints_every_section_with_an_estimate(quick, capsys):
    for name in LAB_PLANS:
        assert main(["reproduce", name, "--dry-run", *(["--quick"] if quick else [])]) == 0
        out = capsys.readouterr().out
        for number, section in enumerate(load_plan(name, quick=quick).sections, start=1):
            row = next(line for line in out.splitlines() if re.match(rf"\|\s+{number} \| {section.key} ", line))
            assert section.search.name in row and (" min " in row or " s " in row), row
        assert "Total:" in out and "estimated from seconds per training sample-epoch" in out
        assert ("quick run" in out.splitlines()[0]) == quick


def test_a_lab_that_declares_no_cost_is_said_unknown_not_guessed(monkeypatch, capsys):
    monkeypatch.setitem(LABS, "mlp", dataclasses.replace(LABS["mlp"], cost=None))  # as a lab of one's own may
    assert main(["reproduce", "lab1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\|\s+\d+ \| ", line)]
    mlp, linreg = [r for r in rows if "| mlp " in r], [r for r in rows if "| linreg " in r]
    assert mlp and all(r.rstrip(" |").endswith("unknown") for r in mlp), mlp
    assert linreg and all(" s " in r or " min " in r for r in linreg), linreg  # linreg declares its cost
    assert "not counting " in out and "its lab declares no cost" in out


def test_a_bad_plan_is_refused_in_one_line_naming_file_and_key(tmp_path, capsys):
    plan = tmp_path / "bad.yaml"
    good = {"key": "a", "title": "t", "question": "q?", "lab": "mlp", "search": "optimizer"}
    cases = [
        ({"title": "t", "question": "q", "sections": [{**good, "colour": "red"}]}, "sections[0]: unknown key 'colour'"),
        ({"title": "t", "question": "q", "sections": [{**good, "search": "nope"}]}, "sections[0] (a): unknown search 'nope'"),
        ({"title": "t", "question": "q", "sections": [{**good, "quick": {"subset": 0}}]}, "sections[0].quick.subset: 0 is not allowed"),
        ({"title": "t", "question": "q", "sections": [{**good, "set": {"epochs": "x"}}]}, "sections[0] (a): set.epochs: 'x' is not allowed"),
        ({"title": "t", "question": "q", "sections": [good, good]}, "sections[1].key: 'a' is used twice"),
        ({"title": "t", "sections": [good]}, ": missing key 'question'"),
        ({"title": "t", "question": "q", "sections": [{**good, "accept": {"w_error": 0.05}}]},
         "sections[0].accept: unknown metric 'w_error' of lab mlp; allowed: train_loss"),
        ({"title": "t", "question": "q", "sections": [{**good, "accept": {"val_acc": "high"}}]},
         "sections[0].accept.val_acc: 'high' is not allowed"),
    ]
    for doc, said in cases:
        plan.write_text(json.dumps(doc))
        with pytest.raises(SearchSpaceError) as raised:
            load_plan(str(plan))
        assert str(plan) in str(raised.value) and said in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert main(["reproduce", "lab9", "--dry-run"]) == 2
    assert "unknown lab 'lab9'; known: lab1, lab2, lab3, lab4, lab5" in capsys.readouterr().err


SECTION_SEARCH = """
description: {description}
lab: mlp
fixed: {{epochs: {epochs}, batch_size: 32, optimizer: sgd, momentum: 0.9}}
params:
  lr: {{grid: [{lrs}]}}
search: grid
scheduler: fifo
"""


def write_plan(tmp_path: Path) -> Path:
    """Two small mlp sections on tiny_mnist, the second long enough to be killed during."""
    for name, epochs, lrs in (("short", 2, "0.05, 0.001"), ("long", EPOCHS, "0.02, 0.0005")):
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(SECTION_SEARCH.format(
            description=f"the {name} search", epochs=epochs, lrs=lrs)))
    plan = tmp_path / "tiny.yaml"
    plan.write_text(textwrap.dedent(f"""
        title: A tiny lab
        question: Which learning rate?
        sections:
          - key: first
            title: The first search
            question: Which rate in two epochs?
            lab: mlp
            search: {tmp_path / 'short.yaml'}
            dataset: mnist
          - key: second
            title: The second search
            question: Which rate in {EPOCHS} epochs?
            lab: mlp
            search: {tmp_path / 'long.yaml'}
            dataset: mnist
            quick: {{skip: not in a quick run}}
    """))
    return plan


def epochs_reported(trial_dir: Path) -> int:
    result = trial_dir / "result.json"
    return len(result.read_text().splitlines()) if result.is_file() else 0


def test_reproduce_runs_a_plan_end_to_end_and_resumes_after_a_kill(ray_session, tiny_mnist, tmp_path, capsys):
    plan = write_plan(tmp_path)
    root = tmp_path / "results"
    command = ["reproduce", str(plan), "--data-dir", str(tiny_mnist), "--storage", str(root), "--max-concurrent", "1"]

    def second_under_way() -> bool:
        return any(0 < epochs_reported(t) < EPOCHS for t in root.glob("reproduce-tiny-*/second/run_trial_*"))

    # The first run, in a process of its own (its own Ray), killed during the second section's first trial;
    # then the same command again, as typed: it continues that reproduce (its folder is named by the time).
    kill_when(start_killable(*command), second_under_way, "the second section was under way")
    (folder,) = root.glob("reproduce-tiny-*")
    first = json.loads((folder / "first" / "summary.json").read_text())
    assert first["complete"] and not (folder / "second" / "summary.json").exists()
    first_files = {p: p.stat().st_mtime_ns for p in (folder / "first").rglob("*") if p.is_file()}

    assert main(command) == 0
    out = capsys.readouterr().out
    assert f"continuing the unfinished {folder}" in out
    assert "[1/2] first: done" in out and "[2/2] second: resumed" in out
    # the finished section was not run again: not one of its files was rewritten
    assert {p: p.stat().st_mtime_ns for p in (folder / "first").rglob("*") if p.is_file()} == first_files
    second = json.loads((folder / "second" / "summary.json").read_text())
    assert second["complete"] and len(second["trials"]) == 2
    assert all(t["status"] == "completed" and t["epochs_run"] == EPOCHS for t in second["trials"])

    report = folder / "report"
    md, html = (report / "report.md").read_text(), (report / "report.html").read_text()
    assert not md.startswith("**Quick run**")
    for summary, title in ((first, "The first search"), (second, "The second search")):
        best = summary["best"]["setting"]["lr"]
        assert title in md and title in html
        assert f"Best: **lr={best:g}**" in md and f"Best: <b>lr={best:g}</b>" in html  # the generated answer
        assert f"lr={best:g}" in md.split(title)[1].split("|")[0]
    assert md.count("### Comparison") == 2 and html.count("<h3>Comparison</h3>") == 2  # each search's table
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert "first-best_curves.png" in pngs and "second-best_curves.png" in pngs
    assert "](first-best_curves.png)" in md and html.count("data:image/png;base64,") == len(pngs)
    assert (report / "first-table.csv").is_file() and (report / "second-table.csv").is_file()

    from mlflow.tracking import MlflowClient

    run = json.loads((folder / "reproduce.json").read_text())
    client = MlflowClient(tracking_uri=run["mlflow"]["tracking_uri"])
    parent = client.get_run(run["mlflow"]["run_id"])
    assert parent.info.status == "FINISHED"
    for key, summary in (("first", first), ("second", second)):
        assert parent.data.tags[f"tune_lab.section.{key}"] == summary["mlflow"]["parent_run_id"]
        section_run = client.get_run(summary["mlflow"]["parent_run_id"])
        assert section_run.data.tags["tune_lab.reproduce_run_id"] == parent.info.run_id

    # Named, the finished reproduce has nothing left to run; its quick run is another (refused in this folder).
    named = [*command, "--experiment", folder.name]
    assert main(named) == 0
    out = capsys.readouterr().out
    assert "[1/2] first: done" in out and "[2/2] second: done" in out
    assert main([*named, "--quick"]) == 2
    assert "rerun that command to continue it" in capsys.readouterr().err


def test_a_sections_lab_text_and_figures_come_from_its_own_report(tmp_path):
    """seq2seq's sample translations (the lab's own text) are neither a table nor a figure: they are kept."""
    from tune_lab.reproduce.report import _own_report

    report = tmp_path / "report"
    report.mkdir()
    (report / "curves.png").write_bytes(b"png")
    (report / "report.md").write_text(textwrap.dedent("""
        # tune-lab report: seq2seq / cell on eng_fra

        ## Comparison

        | setting | val_bleu |

        ## Sample translations (test split, greedy decoding)

        ```
        > je suis fatigue .
        = i m tired.
        < i m tired.
        ```

        ## Best trial: train / val / test per epoch

        ![Best trial: train / val / test per epoch](curves.png)

        ## A figure whose file is gone

        ![A figure whose file is gone](gone.png)
    """))
    figures, text = _own_report(tmp_path, ["Comparison"])
    assert figures == [("Best trial: train / val / test per epoch", report / "curves.png")]
    assert text.startswith("### Sample translations") and "< i m tired." in text and "Comparison" not in text
    assert "gone" not in text


def test_the_answer_of_a_lab_table_names_each_sweeps_best_and_the_published_verdict():
    """A sweep search's paragraph: the best trial, then the best of each sweep per variant, then how the
    variants stand against the lab's published figures (here the lab's own experiment: Fashion-MNIST, all images)."""
    from tune_lab.reproduce import answer

    base = {"epochs": 20, "batch_size": 256, "lr": 0.005, "loss": "cross_entropy", "optimizer": "adam", "model": "mlp"}

    def trial(n: int, variant: str, val: float, test: float, **change) -> dict:
        setting = {"variant": variant, "epochs": 20, "optimizer": "adam", **change}
        return {"trial_id": f"t{n}", "setting": setting, "config": {**base, **setting}, "status": "completed",
                "best": {"val_acc": val, "test_acc": test}, "epochs_run": setting["epochs"], "best_epoch": 5,
                "wall_time_s": 1.0}

    trials = [trial(0, "faithful", 0.86, 0.85), trial(1, "faithful", 0.87, 0.86, epochs=40),
              trial(2, "faithful", 0.84, 0.84, optimizer="sgd"), trial(3, "corrected", 0.90, 0.895),
              trial(4, "corrected", 0.89, 0.885, epochs=40), trial(5, "corrected", 0.88, 0.87, optimizer="sgd")]
    record = {"lab": "mlp", "dataset": "fashion_mnist", "subset": None, "metric": "val_acc", "mode": "max",
              "metrics": ["train_acc", "val_acc", "test_acc"], "fixed": base, "repeats": 1,
              "sweeps": {"epochs": [20, 40], "optimizer": ["adam", "sgd"]},
              "variants": {"faithful": {"faithful": True}, "corrected": {"faithful": False}},
              "trials": trials, "best": {"trial_id": "t3", "epoch": 5, "metrics": trials[3]["best"]}}
    text = answer(record)
    assert text.startswith("Best: **corrected: base (epochs=20, optimizer=adam)**, val acc 90.00% (test: 89.50%)")
    assert ("Best of each sweep (by val acc): faithful: epochs=40 (87.00%), optimizer=adam (86.00%); "
            "corrected: epochs=20 (90.00%), optimizer=adam (90.00%).") in text
    # the lab's epochs 20 / 40 and adam / sgd rows: 88.54 / 89.29 and 87.96 / 89.16 (reports.published)
    assert "corrected test acc %: above the lab's published test accuracy on 2 of 4 rows" in text


def test_the_answer_says_whether_the_best_trial_meets_the_plans_acceptance():
    """Lab 1's line fit: `accept: {w_error: 0.05, b_error: 0.05}` is judged on the best trial, bound by bound."""
    from tune_lab.reproduce import answer

    def trial(n: int, lr: float, val_loss: float, w_error: float, b_error: float) -> dict:
        return {"trial_id": f"t{n}", "setting": {"lr": lr}, "config": {"lr": lr}, "status": "completed",
                "best": {"val_loss": val_loss, "w_error": w_error, "b_error": b_error}, "epochs_run": 3,
                "best_epoch": 3, "wall_time_s": 0.1}

    def record(*trials: dict) -> dict:
        best = min(trials, key=lambda t: t["best"]["val_loss"])
        return {"lab": "linreg", "dataset": "synthetic", "subset": None, "metric": "val_loss", "mode": "min",
                "metrics": ["train_loss", "val_loss", "w_error", "b_error"], "fixed": {}, "repeats": 1,
                "trials": list(trials), "best": {"trial_id": best["trial_id"], "epoch": 3, "metrics": best["best"]}}

    accept = {"w_error": 0.05, "b_error": 0.05}
    good = answer(record(trial(0, 0.03, 1e-4, 0.0007, 0.0002), trial(1, 0.003, 1.04, 0.61, 0.77)), accept)
    assert good.startswith("Best: **lr=0.03**")
    assert "Acceptance: w_error 0.0007 (at most 0.05) met; b_error 0.0002 (at most 0.05) met: all met." in good
    short = answer(record(trial(0, 0.01, 0.002, 0.01, 0.08)), accept)
    assert "w_error 0.0100 (at most 0.05) met; b_error 0.0800 (at most 0.05) NOT met: not all met." in short
    assert "Acceptance" not in answer(record(trial(0, 0.03, 1e-4, 0.0007, 0.0002)))  # a plan without accept:
