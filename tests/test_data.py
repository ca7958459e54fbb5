"""Data: torchvision loading, the fixed split, the digits fallback and the offline refusal."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainables.data import DatasetUnavailable, load_images, resolve_data_dir
from tune_lab.cli import main
from tune_lab.runner import SearchOptions, load_dataset
from tune_lab.spaces import load_search


def test_tiny_mnist_loads_with_a_fixed_split(tiny_mnist):
    a = load_images("mnist", tiny_mnist)
    b = load_images("mnist", tiny_mnist)
    assert a.x_train.shape == (1080, 1, 28, 28) and a.x_val.shape == (120, 1, 28, 28)
    assert a.x_test.shape == (300, 1, 28, 28) and a.x_train.dtype == np.uint8
    assert np.array_equal(a.y_val, b.y_val) and np.array_equal(a.x_train, b.x_train)
    assert a.num_classes == 10 and len(a.mean) == 1 and 0 < a.std[0] < 1
    small = load_images("mnist", tiny_mnist, subset=100)
    assert len(small.y_train) == 100 and np.array_equal(small.y_val, a.y_val)


def _load_in_a_fresh_process(root: Path, cache: Path) -> dict:
    """load_images("mnist", root) in a new interpreter, as a search's driver would: what it read, and whether it
    imported torchvision to read it."""
    code = ("import json, sys; from trainables.data import load_images; d = load_images('mnist', sys.argv[1]); "
            "print(json.dumps({'torchvision': 'torchvision' in sys.modules, 'classes': d.classes, "
            "'train': int(d.x_train.astype('int64').sum()), 'labels': d.y_test.tolist(), 'mean': d.mean}))")
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True,
                          env={**os.environ, "TUNE_LAB_CACHE": str(cache)}, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout)


def test_the_raw_folders_are_where_torchvision_reads_them():
    """tune-lab names the folders without importing torchvision (see trainables.data._load_digit_images)."""
    from trainables.data import TORCHVISION_FOLDERS, _torchvision_class

    assert {name: _torchvision_class(name).__name__ for name in TORCHVISION_FOLDERS} == TORCHVISION_FOLDERS


def test_mnist_is_decoded_by_torchvision_once_then_read_from_a_copy_that_follows_the_raw_files(tiny_mnist, tmp_path):
    root, cache = tmp_path / "data", tmp_path / "cache"
    shutil.copytree(tiny_mnist, root)  # this test rewrites a raw file
    first = _load_in_a_fresh_process(root, cache)
    assert first["torchvision"] and len(list((cache / "decoded").glob("mnist-*.npz"))) == 1
    again = _load_in_a_fresh_process(root, cache)
    assert not again["torchvision"]  # the start-up's ~2 s of importing torchvision, saved
    assert {k: v for k, v in again.items() if k != "torchvision"} == {k: v for k, v in first.items() if k != "torchvision"}

    labels = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10  # the last test label changed: the copy no longer stands
    labels.write_bytes(bytes(raw))
    changed = _load_in_a_fresh_process(root, cache)
    assert changed["torchvision"] and changed["labels"][-1] == (first["labels"][-1] + 1) % 10
    assert not _load_in_a_fresh_process(root, cache)["torchvision"]  # and the new copy is used from then on

    copy = next((cache / "decoded").glob("mnist-*.npz"))
    copy.write_bytes(copy.read_bytes()[:1000])  # cut short (a full disk, a kill while another search wrote it)
    assert _load_in_a_fresh_process(root, cache)["labels"] == changed["labels"]
    assert [p.name for p in (cache / "decoded").iterdir()] == [copy.name]  # made again, nothing left beside it
    assert not _load_in_a_fresh_process(root, cache)["torchvision"]


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNE_LAB_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path.resolve()
    assert resolve_data_dir(tmp_path / "x") == (tmp_path / "x").resolve()
    monkeypatch.delenv("TUNE_LAB_DATA")
    assert str(resolve_data_dir()).endswith(".cache/tune-lab/data")


def test_missing_mnist_falls_back_to_digits_loudly(tmp_path, capsys):
    search = load_search("optimizer", "mlp")
    data = load_dataset(search, SearchOptions(data_dir=str(tmp_path)))
    assert data.name == "digits" and data.shape == (1, 8, 8)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 1797
    err = capsys.readouterr().err
    assert "Falling back to 'digits'" in err and "train-images-idx3-ubyte" in err


def test_explicit_mnist_never_falls_back(tmp_path, capsys):
    code = main(["mlp", "--search", "optimizer", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in err


def test_truncated_dataset_file_is_a_clear_error(tiny_mnist, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_mnist, root)
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(DatasetUnavailable, match="could not be read"):
        load_images("mnist", root)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("exists", [True, False], ids=["empty dir", "no dir"])
def test_a_failed_download_writes_nothing_and_advises_in_the_terms_typed(exists, tmp_path, monkeypatch, capsys):
    """Offline with downloads allowed (here: MNIST's mirror a closed local port, so the failure is
    real and quick): no MNIST/raw left in the data dir, nothing in the results root, and no
    "pass --data-dir" to someone who did."""
    from torchvision import datasets

    monkeypatch.setenv("TUNE_LAB_OFFLINE", "0")
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"http://127.0.0.1:{_closed_port()}/"])
    empty = tmp_path / "EMPTY"
    if exists:
        empty.mkdir()
    code = main(["mlp", "--search", "optimizer", "--dataset", "mnist", "--data-dir", str(empty),
                 "--storage", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "downloading it failed" in err[0] and err[0].endswith("put the files there, or give --data-dir a folder that has them")
    assert (sorted(empty.rglob("*")) == []) if exists else not empty.exists()
    assert not (tmp_path / "results").exists()


def test_without_data_dir_the_advice_names_where_the_data_dir_came_from(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_LAB_DATA", str(tmp_path))
    with pytest.raises(DatasetUnavailable, match=r"downloads are off\); .* point \$TUNE_LAB_DATA \(or --data-dir\) at"):
        load_images("mnist")
    monkeypatch.delenv("TUNE_LAB_DATA")
    monkeypatch.setattr("trainables.data.DEFAULT_DATA_DIR", tmp_path / "default")
    with pytest.raises(DatasetUnavailable, match=r"pass --data-dir with a folder that has them"):
        load_images("mnist")


def test_download_into_moves_a_finished_download_and_keeps_what_was_there(tmp_path):
    from trainables.data import download_into

    root = tmp_path / "data"
    (root / "MNIST" / "raw").mkdir(parents=True)
    (root / "MNIST" / "raw" / "kept").write_text("mine")

    def fetch(tmp):
        raw = Path(tmp) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        (raw / "kept").write_text("theirs")
        (raw / "new").write_text("new")

    download_into(root, fetch, "MNIST")
    assert (root / "MNIST" / "raw" / "kept").read_text() == "mine" and (root / "MNIST" / "raw" / "new").read_text() == "new"

    def fail(tmp):
        (Path(tmp) / "FashionMNIST" / "raw").mkdir(parents=True)
        raise RuntimeError("mirror down")

    with pytest.raises(RuntimeError):
        download_into(root, fail, "FashionMNIST")
    assert not (root / "FashionMNIST").exists()


def test_channel_stats_match_the_float_formula_without_a_float_copy():
    """The normalisation constants from each channel's histogram are those of the images scaled to
    [0, 1] in float64 (to ~1e-16; equal as the float32 tensors trials normalise with)."""
    import numpy as np
    import torch

    from trainables.data import channel_stats

    rng = np.random.default_rng(7)
    for shape in [(200, 1, 28, 28), (100, 3, 32, 32)]:
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        images[:, 0, :4] = 0  # uneven channels: a mean that is not 127.5 / 255
        scaled = images.astype(np.float64) / 255.0
        mean, std = channel_stats(images)
        assert len(mean) == len(std) == shape[1]
        np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=0, atol=1e-12)
        np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=0, atol=1e-12)
        assert torch.equal(torch.tensor(mean), torch.tensor(scaled.mean(axis=(0, 2, 3)).tolist()))
