"""--keep-checkpoints: a finished search keeps the checkpoints that matter; an unfinished one all of them."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.conftest import kill_when, run_search, start_killable_search
from trainables.loop import CHECKPOINT_FILE
from tune_lab import pruning
from tune_lab.cli import build_parser, main

SEARCH = """
description: three learning rates, good to hopeless
lab: mlp
metric: val_acc
fixed: {epochs: 2, batch_size: 64, optimizer: sgd, momentum: 0.9}
params:
  lr: {grid: [0.05, 0.001, 1.0e-6]}
search: grid
scheduler: fifo
"""
KILL_EPOCHS = 6  # long enough to be killed while the second trial runs
KILLABLE = f"""
description: three trials, one at a time, to be killed in the middle
lab: mlp
metric: val_acc
fixed: {{epochs: {KILL_EPOCHS}, batch_size: 64, optimizer: sgd, momentum: 0.9}}
params:
  lr: {{grid: [0.05, 0.001, 1.0e-6]}}
search: grid
scheduler: fifo
"""


def checkpoint_folders(folder: Path) -> dict[str, list[Path]]:
    """Trial folder name -> its Ray checkpoint folders."""
    return {t.name: sorted(t.glob("checkpoint_*")) for t in sorted(folder.glob("run_trial_*"))}


def other_files(folder: Path) -> dict[str, list[str]]:
    """Trial folder name -> what it holds beside its checkpoints (results, params, progress, events)."""
    return {t.name: sorted(p.name for p in t.iterdir() if not p.name.startswith("checkpoint_"))
            for t in folder.glob("run_trial_*")}


def trial_folder(row: dict) -> str:
    return Path(row["path"]).name


def test_the_flag_says_what_it_takes(capsys):
    parse = build_parser().parse_args
    assert parse(["mlp", "--search", "lr"]).keep_checkpoints == "best"
    assert parse(["mlp", "--search", "lr", "--keep-checkpoints", "all"]).keep_checkpoints == "all"
    assert parse(["mlp", "--search", "lr", "--keep-checkpoints", "3"]).keep_checkpoints == 3
    for bad in ("0", "some", "-2"):
        with pytest.raises(SystemExit):
            parse(["mlp", "--search", "lr", "--keep-checkpoints", bad])
        assert "--keep-checkpoints" in capsys.readouterr().err


@pytest.fixture(scope="module")
def kept_all(ray_session, tiny_mnist, tmp_path_factory) -> Path:
    """The folder of a finished 3-trial search run with --keep-checkpoints all."""
    root = tmp_path_factory.mktemp("keep-all") / "results"
    run_search("mlp", SEARCH, tiny_mnist, root, "all", "--max-concurrent", "2", "--keep-checkpoints", "all")
    return root / "all"


def test_all_keeps_every_checkpoint_and_survives_in_the_state_file(kept_all, tmp_path):
    summary = json.loads((kept_all / "summary.json").read_text())
    assert summary["complete"] and len(summary["trials"]) == 3
    for row in summary["trials"]:
        assert row["checkpoint"] and Path(row["checkpoint"]).is_dir()
    assert all(len(found) == 1 for found in checkpoint_folders(kept_all).values())

    from tune_lab.plan import load_state

    state = json.loads((kept_all / "search.json").read_text())
    assert state["options"]["keep_checkpoints"] == "all"  # what `tune-lab resume` reads back
    assert load_state(kept_all)[1].keep_checkpoints == "all"
    del state["options"]["keep_checkpoints"]  # a search started before the option existed
    old = tmp_path / "old"
    old.mkdir()
    (old / "search.json").write_text(json.dumps(state))
    assert load_state(old)[1].keep_checkpoints == "best"


def copy_of(folder: Path, to: Path) -> tuple[Path, dict]:
    """A finished search's folder elsewhere, its summary's paths pointing at the copy."""
    shutil.copytree(folder, to)
    text = (to / "summary.json").read_text().replace(str(folder), str(to))
    (to / "summary.json").write_text(text)
    return to, json.loads(text)


@pytest.mark.parametrize("keep, uri", [("best", False), (2, True)], ids=["best", "2, storage at a file:// URI"])
def test_pruning_keeps_the_best_trials_checkpoints_and_nothing_else(kept_all, tmp_path, keep, uri):
    folder, summary = copy_of(kept_all, tmp_path / "copy")
    if uri:  # a remote results root: pruned through pyarrow's filesystem from the URI, as Ray stores it
        summary["storage"] = folder.as_uri()
    before = other_files(folder)
    order = sorted(summary["trials"], key=lambda r: -r["best"]["val_acc"])
    count = 1 if keep == "best" else keep
    wanted = {trial_folder(r) for r in order[:count]}

    plan = pruning.plan(summary, keep)
    freed = pruning.apply(plan)
    assert plan.kept == [r["trial_id"] for r in order[:count]] and plan.kept[0] == summary["best"]["trial_id"]
    assert freed > 0 and f"kept the checkpoints of {count} trial(s) (best: {plan.kept[0]})" in plan.line(freed)
    found = checkpoint_folders(folder)
    assert {name for name, ckpts in found.items() if ckpts} == wanted
    for row in summary["trials"]:  # the summary names a checkpoint exactly where one is left
        kept = trial_folder(row) in wanted
        assert (row["checkpoint"] is not None) == kept
        if kept:
            assert found[trial_folder(row)] == [Path(row["checkpoint"])]
    assert Path(summary["best"]["checkpoint"]).is_dir()
    # results, params, progress and events stay
    assert other_files(folder) == before
    assert pruning.plan(summary, "all") is None


def epochs_reported(trial: Path) -> int:
    result = trial / "result.json"
    return len(result.read_text().splitlines()) if result.is_file() else 0


def test_an_interrupted_search_keeps_its_checkpoints_and_prunes_once_resumed(ray_session, tiny_mnist, tmp_path, capsys):
    space = tmp_path / "killable.yaml"
    space.write_text(textwrap.dedent(KILLABLE))
    root = tmp_path / "results"
    folder = root / "killed"

    def one_done_and_one_mid_run() -> bool:  # a trial finished, the next has a checkpoint and epochs to go
        epochs = {t.name: epochs_reported(t) for t in folder.glob("run_trial_*")}
        found = checkpoint_folders(folder)
        return KILL_EPOCHS in epochs.values() and any(found.get(t) and 0 < n < KILL_EPOCHS for t, n in epochs.items())

    kill_when(start_killable_search(space, tiny_mnist, root, "killed"), one_done_and_one_mid_run,
              "a trial was done and the next mid-run", every=0.05)
    assert not (folder / "summary.json").exists()
    assert sum(bool(c) for c in checkpoint_folders(folder).values()) >= 2  # nothing pruned: resume needs them

    assert main(["resume", str(folder)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] and len(summary["trials"]) == 3
    assert all(t["status"] == "completed" and t["epochs_run"] == KILL_EPOCHS for t in summary["trials"])
    best = summary["best"]
    found = checkpoint_folders(folder)
    assert {name for name, ckpts in found.items() if ckpts} == {Path(best["checkpoint"]).parent.name}
    assert [r["trial_id"] for r in summary["trials"] if r["checkpoint"]] == [best["trial_id"]]
    assert f"kept the checkpoints of 1 trial(s) (best: {best['trial_id']})" in out

    # what loads the best model still finds it, and MLflow holds it as today
    from tune_lab.checkpoints import best_checkpoint

    loaded = best_checkpoint("mlp", str(root), "killed")
    assert (loaded.folder / CHECKPOINT_FILE).is_file() and loaded.trial_id == best["trial_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])
    artifacts = {a.path for a in client.list_artifacts(summary["mlflow"]["parent_run_id"], "best_checkpoint")}
    assert f"best_checkpoint/{CHECKPOINT_FILE}" in artifacts
    assert main(["report", str(folder)]) == 0  # a rebuilt report copes with the pruned trials
