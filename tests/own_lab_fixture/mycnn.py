"""A student's own lab, in a file of its own: a tiny CNN on the shipped MNIST loader.

What tests/test_user_labs.py runs with `tune-lab --labs tests/own_lab_fixture/mycnn.py mycnn
--search FILE.yaml`: the hyperparameters (a dataclass registered with `register_lab`, naming this
very module) and the lab's module (`Trainer`, `load_data` and the three report hooks) in one file.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from trainables.classify import ClassifierTrainer
from labspec.config import hp
from trainables.data import load_images as load_data  # noqa: F401  (the lab's data)
from labspec.hparams import CLASSIFIER_METRICS, TrainConfig
from labspec.registry import register_lab


@register_lab("mycnn", module=__name__, datasets=("mnist", "fashion_mnist"),
              description="a tiny CNN of my own on MNIST", metrics=CLASSIFIER_METRICS, metric="val_acc",
              gpu_fraction=0.25)
@dataclass
class MyCNNConfig(TrainConfig):
    epochs: int = hp(2, min=1, max=100)
    batch_size: int = hp(64, min=1, max=10_000)
    lr: float = hp(0.003, min=0.0, max=1.0)
    channels: int = hp(4, min=1, max=64, help="filters of the convolution")


class TinyCNN(nn.Sequential):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(nn.Conv2d(1, channels, 5, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(channels * 16, num_classes))


class Trainer(ClassifierTrainer):
    cfg: MyCNNConfig

    def build_model(self, data) -> nn.Module:
        return TinyCNN(self.cfg.channels, data.num_classes)

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets)


report_figures = report_text = sample_images = None  # the hooks this lab leaves out
