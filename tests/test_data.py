"""Data: torchvision loading, the fixed split, the digits fallback and the offline refusal."""
from __future__ import annotations

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
