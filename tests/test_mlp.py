"""Lab 1's models and losses, without Ray."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.data import load_images
from labspec.hparams import MLPConfig
from trainables.mlp import MLP, SoftmaxRegression, Trainer


def test_faithful_mlp_ends_in_softmax_and_corrected_in_logits():
    x = torch.randn(32, 1, 28, 28)
    faithful, corrected = MLP(784, 10, faithful=True).eval(), MLP(784, 10).eval()
    probs = faithful(x)
    assert probs.shape == (32, 10)
    assert torch.all(probs >= 0) and torch.allclose(probs.sum(1), torch.ones(32), atol=1e-5)
    logits = corrected(x)
    assert logits.shape == (32, 10) and (logits < 0).any()
    assert not isinstance(list(corrected.children())[-1], torch.nn.Softmax)


def test_mlp_has_the_labs_layers():
    linear = [m for m in MLP(784, 10).modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 256), (256, 128), (128, 64), (64, 10)]
    norms = [m.num_features for m in MLP(784, 10).modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms == [784, 256, 128, 64]
    assert sum(p.numel() for p in SoftmaxRegression(784, 10).parameters()) == 7850


def test_losses(tiny_mnist):
    data = load_images("mnist", tiny_mnist, subset=64)
    outputs, targets = torch.randn(8, 10), torch.randint(0, 10, (8,))
    losses = {}
    for loss in ("cross_entropy", "nll", "mse"):
        trainer = Trainer(MLPConfig(loss=loss, epochs=1), data, torch.device("cpu"))
        losses[loss] = trainer.loss(outputs, targets)
    assert torch.allclose(losses["cross_entropy"], losses["nll"])
    expected_mse = F.mse_loss(outputs.softmax(1), F.one_hot(targets, 10).float())
    assert torch.allclose(losses["mse"], expected_mse)


def test_one_epoch_learns_the_tiny_task(tiny_mnist):
    data = load_images("mnist", tiny_mnist)
    trainer = Trainer(MLPConfig(epochs=3, batch_size=64, lr=0.01), data, torch.device("cpu"))
    for _ in range(3):
        train = trainer.train_epoch()
    metrics = trainer.evaluate()
    assert train["samples"] == len(data.y_train)
    assert metrics["val_acc"] > 0.9 and metrics["test_acc"] > 0.9


def test_trials_on_the_same_arrays_share_their_normalised_splits(tiny_mnist):
    """A reused trial process builds trainer after trainer on the same data: normalised once."""
    import dataclasses

    data = load_images("mnist", tiny_mnist, subset=64)
    first = Trainer(MLPConfig(epochs=1), data, torch.device("cpu"))
    second = Trainer(MLPConfig(epochs=1, lr=0.1), data, torch.device("cpu"))
    assert all(first.splits[s][0] is second.splits[s][0] for s in ("train", "val", "test"))
    x = torch.tensor(data.x_val, dtype=torch.float32).div(255.0)
    expected = (x - torch.tensor(data.mean).view(1, -1, 1, 1)) / torch.tensor(data.std).view(1, -1, 1, 1)
    assert torch.equal(second.splits["val"][0], expected)
    # other values (a copy, changed) are other arrays: normalised for themselves
    changed = dataclasses.replace(data, x_val=255 - data.x_val)
    third = Trainer(MLPConfig(epochs=1), changed, torch.device("cpu"))
    flipped = torch.tensor(changed.x_val, dtype=torch.float32).div(255.0)
    expected = (flipped - torch.tensor(data.mean).view(1, -1, 1, 1)) / torch.tensor(data.std).view(1, -1, 1, 1)
    assert torch.equal(third.splits["val"][0], expected)
    assert not torch.equal(third.splits["val"][0], first.splits["val"][0])
