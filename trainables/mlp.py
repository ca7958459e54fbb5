"""Lab 1: softmax regression and an MLP on MNIST / Fashion-MNIST (hyperparameters: MLPConfig).

The lab's MLP puts a ReLU and a softmax after its last layer and then trains it with
CrossEntropyLoss, which applies log-softmax again: the gradients through two softmaxes and
a ReLU are weak, which is why the lab's accuracy stalls near 89% on Fashion-MNIST.
`faithful: true` keeps that network; the default ends in plain logits.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainables.classify import ClassifierTrainer
from trainables.data import ImageData
from trainables.data import load_images as load_data  # noqa: F401  (the lab's data, for the driver)
from trainables.hparams import MLPConfig

HIDDEN = (256, 128, 64)


class SoftmaxRegression(nn.Sequential):
    """One linear layer from pixels to class scores."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__(nn.Flatten(), nn.Linear(in_features, num_classes))


class MLP(nn.Sequential):
    """BN(in) -> [Linear -> ReLU -> BN] x3 -> Linear, the lab's network.

    With faithful=True the output layer is followed by ReLU and Softmax, as in the lab.
    """

    def __init__(self, in_features: int, num_classes: int, faithful: bool = False, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [nn.Flatten(), nn.BatchNorm1d(in_features)]
        width = in_features
        for hidden in HIDDEN:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.BatchNorm1d(hidden)]
            if dropout and not faithful:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        if faithful:
            layers += [nn.ReLU(), nn.Softmax(dim=1)]
        super().__init__(*layers)


class Trainer(ClassifierTrainer):
    cfg: MLPConfig

    def build_model(self, data: ImageData) -> nn.Module:
        in_features = math.prod(data.shape)
        if self.cfg.model == "softmax":
            return SoftmaxRegression(in_features, data.num_classes)
        return MLP(in_features, data.num_classes, faithful=self.cfg.faithful, dropout=self.cfg.dropout)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # The model's outputs are treated as logits by every loss, as the lab's code does
        # (so the faithful network's softmax outputs are softmaxed again).
        if self.cfg.loss == "cross_entropy":
            return F.cross_entropy(outputs, targets)
        if self.cfg.loss == "nll":
            return F.nll_loss(F.log_softmax(outputs, dim=1), targets)
        one_hot = F.one_hot(targets, self.num_classes).to(outputs.dtype)
        return F.mse_loss(F.softmax(outputs, dim=1), one_hot)
