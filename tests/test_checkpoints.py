"""Which checkpoint `translate` / `generate` load: the newest search of the lab, or the one named."""
import json
import os

import pytest

from reports.source import SearchNotFound
from tune_lab.checkpoints import best_checkpoint


def _search(root, name, lab, mtime, checkpoint=True):
    folder = root / name
    ckpt = folder / "trial" / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    best = {"trial_id": f"{name}-t1", "metrics": {"val": 1.0}, "checkpoint": str(ckpt) if checkpoint else None}
    summary = folder / "summary.json"
    summary.write_text(json.dumps({"experiment": name, "lab": lab, "best": best}))
    os.utime(summary, (mtime, mtime))
    return ckpt


def test_newest_search_of_the_lab_wins(tmp_path):
    _search(tmp_path, "old", "vae", 1000)
    newest = _search(tmp_path, "new", "vae", 3000)
    _search(tmp_path, "other-lab", "cgan", 5000)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    found = best_checkpoint("vae", str(tmp_path))
    assert found.folder == newest and found.experiment == "new" and found.trial_id == "new-t1"


def test_named_experiment_is_used_and_checked(tmp_path):
    old = _search(tmp_path, "old", "vae", 1000)
    _search(tmp_path, "new", "vae", 3000)
    assert best_checkpoint("vae", str(tmp_path), "old").folder == old
    _search(tmp_path, "gan", "cgan", 2000)
    with pytest.raises(SearchNotFound, match="lab 'cgan', not 'vae'"):
        best_checkpoint("vae", str(tmp_path), "gan")
    with pytest.raises(SearchNotFound, match="--experiment nope"):
        best_checkpoint("vae", str(tmp_path), "nope")


def test_no_search_or_no_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(SearchNotFound, match="run `tune-lab vae --search"):
        best_checkpoint("vae", str(tmp_path))
    _search(tmp_path, "failed", "vae", 1000, checkpoint=False)
    with pytest.raises(SearchNotFound, match="no successful trial"):
        best_checkpoint("vae", str(tmp_path), "failed")
