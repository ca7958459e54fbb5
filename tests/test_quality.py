"""Quality metrics of the generative labs: FID on the reference classifier's features, conditional accuracy,
the classifier's cache, and the shared image tensors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import make_digit_images
from trainables import quality
from trainables.data import ImageData, load_images
from trainables.generative import image_tensors
from trainables.quality import ReferenceRecipe, conditional_accuracy, features, fid, predict, readable_share

TINY_RECIPE = ReferenceRecipe(width=4, features=16, epochs=3, batch_size=32, lr=1e-2)


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path):
    """The reference classifier is cached under the test's own folder, and tiny."""
    monkeypatch.setenv("TUNE_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(quality, "DEFAULT_RECIPE", TINY_RECIPE)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.normal(size=(2000, 16)))
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)
    # Same covariance, means 0.5 apart in every one of 16 dimensions: FID = |mu1 - mu2|^2 = 16 * 0.25.
    assert fid(a, a + 0.5) == pytest.approx(4.0, rel=1e-6)
    assert fid(a, a + 0.5) < fid(a, a + 1.0)
    # Two independent draws of one Gaussian are close; a scaled one is not (trace term: 16 * (2 - 1)^2).
    b = torch.tensor(rng.normal(size=(2000, 16)))
    assert fid(a, b) < 0.2
    assert fid(a, 2 * b) == pytest.approx(16.0, rel=0.1)


def test_fid_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 1.5])
    a = torch.tensor(rng.normal(size=(200_000, 3)) * sd_a)
    b = torch.tensor(rng.normal(size=(200_000, 3)) * sd_b + 1.0)
    expected = 3.0 + ((sd_a - sd_b) ** 2).sum()  # |mu|^2 + sum (s_a - s_b)^2
    assert fid(a, b) == pytest.approx(expected, rel=0.02)


def test_fid_of_a_diverged_generator_is_nan_not_an_error():
    # NaN images give NaN features; the trial must get to run_trial's check, which names the
    # metric and the epoch, instead of failing inside an eigen-decomposition.
    real = torch.randn(100, 8, dtype=torch.float64)
    fake = real.clone()
    fake[3, 2] = float("nan")
    assert np.isnan(fid(real, fake)) and fid(real, real) == pytest.approx(0.0, abs=1e-9)


def _tiny_data(tmp_path) -> ImageData:
    rng = np.random.default_rng(0)
    x, y = make_digit_images(900, rng)
    split = lambda a, b: (x[a:b, None].copy(), y[a:b].astype(np.int64))  # noqa: E731
    (xt, yt), (xv, yv), (xs, ys) = split(0, 600), split(600, 750), split(750, 900)
    return ImageData("mnist", [str(d) for d in range(10)], xt, yt, xv, yv, xs, ys, (0.1,), (0.3,))


def test_reference_classifier_is_trained_once_and_cached(tmp_path, capsys):
    data = _tiny_data(tmp_path)
    first = quality.reference_state(data)
    assert "training the reference classifier" in capsys.readouterr().err
    assert first["val_acc"] > 0.8 and first["recipe"]["width"] == 4
    assert len(list((tmp_path / "cache" / "reference").glob("mnist-v1-*.pt"))) == 1
    again = quality.reference_state(data)
    assert capsys.readouterr().err == ""  # loaded, not retrained
    assert all(torch.equal(again["state"][k], first["state"][k]) for k in first["state"])
    # Another training split is another classifier.
    other = ImageData(**{**data.__dict__, "y_train": (data.y_train + 1) % 10})
    quality.reference_state(other)
    assert len(list((tmp_path / "cache" / "reference").glob("mnist-v1-*.pt"))) == 2


def test_conditional_accuracy_of_real_digits_is_the_classifiers_accuracy(tmp_path):
    data = _tiny_data(tmp_path)
    classifier = quality.reference_classifier(data)
    images, labels = image_tensors(data, "test", channels="native", device=torch.device("cpu"))
    correct = predict(classifier, images).eq(labels)
    overall, per_class = conditional_accuracy(classifier, images, labels)
    assert overall == pytest.approx(float(correct.double().mean()))
    for digit in range(10):
        assert per_class[digit] == pytest.approx(float(correct[labels == digit].double().mean()))
    assert overall > 0.8  # a classifier that learned something, so the check is not vacuous
    # Requesting the wrong digit for every image: only the classifier's own mistakes can "succeed".
    assert conditional_accuracy(classifier, images, (labels + 1) % 10)[0] < 0.2
    # Three 'lab' channels (grey repeated) are read exactly like the one native channel.
    lab, _ = image_tensors(data, "test", channels="lab", device=torch.device("cpu"))
    assert lab.shape[1] == 3
    assert torch.allclose(features(classifier, lab), features(classifier, images))
    assert features(classifier, images).shape == (len(labels), 16)


def test_readable_share_separates_digits_from_blends(tmp_path):
    data = _tiny_data(tmp_path)
    classifier = quality.reference_classifier(data)
    images, labels = image_tensors(data, "test", channels="native", device=torch.device("cpu"))
    real = readable_share(classifier, images)
    half = len(images) // 2
    blends = readable_share(classifier, (images[:half] + images[half : 2 * half]) / 2)
    # (Noise is no test here: a 4-channel classifier of synthetic digits reads it confidently.
    # On real MNIST the reference reads 0.96 of test digits, 0.38 of blends, 0.06 of noise.)
    assert real > 0.5 and blends < real - 0.2
    # The share is of images whose top class probability reaches the bar, so the bar's ends are 1 and 0.
    assert readable_share(classifier, images, confidence=0.0) == 1.0
    assert readable_share(classifier, images, confidence=1.01) == 0.0
    top = torch.softmax(classifier(images), 1).amax(1)
    assert readable_share(classifier, images, confidence=0.7) == pytest.approx(float(top.ge(0.7).double().mean()))


def test_image_tensors_scale_repeat_and_resize(tmp_path):
    data = _tiny_data(tmp_path)
    x, y = image_tensors(data, "train", channels="native", device=torch.device("cpu"), value_range=(-1.0, 1.0))
    assert x.shape == (600, 1, 28, 28) and y.dtype == torch.int64
    assert x.min() >= -1.0 and x.max() == 1.0
    rgb = ImageData(**{**data.__dict__, "x_val": np.random.default_rng(0).integers(0, 256, (150, 3, 32, 32), dtype=np.uint8)})
    v, _ = image_tensors(rgb, "val", channels="native", device=torch.device("cpu"))
    assert v.shape == (150, 3, 28, 28) and 0.0 <= float(v.min()) and float(v.max()) <= 1.0
    assert image_tensors(rgb, "val", channels="lab", device=torch.device("cpu"))[0].shape == (150, 3, 28, 28)
    with pytest.raises(ValueError, match="channels: 'rgb' is not allowed"):
        image_tensors(data, "val", channels="rgb", device=torch.device("cpu"))


def test_tiny_mnist_loads_with_its_reference(tiny_mnist):
    from trainables.generative import load_generative_data

    data = load_generative_data("mnist", tiny_mnist, subset=200)
    assert data.split_sizes["train"] == 200 and data.name == "mnist" and data.shape == (1, 28, 28)
    full = load_images("mnist", tiny_mnist)
    assert np.array_equal(data.images.x_train, full.x_train[:200])
    # The reference learned from the whole training split, not the subset: the same cache entry.
    whole = load_generative_data("mnist", tiny_mnist)
    assert all(torch.equal(whole.reference["state"][k], v) for k, v in data.reference["state"].items())
    assert data.reference["val_acc"] > 0.5
