"""The light form of a lab: one function that builds a model and says what one epoch is.

A student's own lab, in their own file or a notebook cell, without the full contract
(labspec.registry: a module with `Trainer`, `load_data` and the report hooks):

    @dataclass
    class MyCNN:
        lr: float = 1e-3
        epochs: int = 5
        batch_size: int = 128
        seed: int = 0

    @tune_lab.lab("mycnn", config=MyCNN, datasets=("fashion_mnist",))
    def mycnn(cfg, data, device):
        model = ...to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

        def epoch():
            model.train()
            for x, y in data.batches("train", cfg.batch_size):
                ...
            return {"train_loss": ..., **data.evaluate(model, "val")}

        return model, optimizer, epoch

Why a function that returns its epoch rather than a generator that yields it: tune-lab must
restore the model and optimizer before the first epoch of a resumed trial (a promoted trial, a
retry, `tune-lab resume`), and restore them exactly; returning them makes that the loop's job, as
for every shipped lab, so the light form still gets ASHA, repeats, checkpoints and resume.
"""
from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from ray import cloudpickle

from trainables.classify import to_device_tensors
from trainables.data import ImageData, load_images
from labspec.errors import TuneLabError
from trainables.loop import Trainer, index_batches
from labspec.registry import LABS, Mode, register_lab

Setup = Callable[[Any, "LightData", torch.device], tuple[torch.nn.Module, torch.optim.Optimizer, Callable[[], Mapping[str, float]]]]
DEFAULT_METRICS: dict[str, Mode] = {"train_loss": "min", "val_loss": "min", "val_acc": "max",
                                    "test_loss": "min", "test_acc": "max"}
SHIPPED_DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits")  # what trainables.data.load_images reads


class LightData:
    """A shipped image dataset (normalised, on the trial's device) as a light lab uses it."""

    def __init__(self, images: ImageData, device: torch.device, generator: torch.Generator) -> None:
        self.images, self.device, self.generator = images, device, generator
        self.shape, self.num_classes = images.shape, images.num_classes
        self._splits = {split: to_device_tensors(getattr(images, f"x_{split}"), getattr(images, f"y_{split}"),
                                                 images.mean, images.std, device)
                        for split in ("train", "val", "test")}
        self.seen = 0  # training images handed out this epoch (the loop's samples/s)

    def batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) batches; "train" is shuffled by the trial's seeded generator."""
        x, y = self._splits[split]
        for idx in index_batches(len(y), batch_size, self.device, self.generator if split == "train" else None):
            if split == "train":
                self.seen += len(idx)
            yield x.index_select(0, idx), y.index_select(0, idx)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str, batch_size: int = 1000) -> dict[str, float]:
        """`{split}_loss` (cross-entropy on the model's logits) and `{split}_acc` over a whole split."""
        model.eval()
        loss, correct, n = torch.zeros((), device=self.device), torch.zeros((), device=self.device), 0
        for x, y in self.batches(split, batch_size):
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
        return {f"{split}_loss": loss.item() / n, f"{split}_acc": correct.item() / n}


class LightTrainer(Trainer):
    """The loop's Trainer around a light lab's function (`setup`, set on a subclass per lab)."""

    setup: Setup

    def __init__(self, cfg: Any, data: ImageData, device: torch.device) -> None:
        super().__init__(cfg, data, device)
        self.data = LightData(data, device, self.generator)
        self.model, self.optimizer, self._epoch = type(self).setup(cfg, self.data, device)
        self._metrics: dict[str, float] = {}

    def train_epoch(self) -> dict[str, float]:
        self.data.seen = 0
        self._metrics = {key: float(value) for key, value in self._epoch().items()}
        if "train_loss" not in self._metrics:
            raise ValueError(f"the epoch of {type(self).__name__} returned {sorted(self._metrics)}: "
                             f"it returns at least train_loss and the searched metric")
        train = {key: value for key, value in self._metrics.items() if key.startswith("train_")}
        return {**train, "samples": self.data.seen}

    def evaluate(self) -> dict[str, float]:
        return {key: value for key, value in self._metrics.items() if not key.startswith("train_")}


def lab(name: str, *, config: type, datasets: tuple[str, ...] = ("mnist",), metric: str = "val_acc",
        metrics: Mapping[str, Mode] | None = None, gpu_fraction: float = 0.25,
        description: str = "") -> Callable[[Setup], Setup]:
    """Register the decorated function as lab `name` (see the module's docstring).

    `config`: a dataclass of the lab's hyperparameters (int, float, bool, str or Literal fields,
    with `epochs` and `seed`); `datasets`: shipped datasets by name, the first the default (mnist,
    fashion_mnist, cifar10), loaded with the shipped labs' validation split and normalisation.
    """
    unknown = [dataset for dataset in datasets if dataset not in SHIPPED_DATASETS]
    if unknown or not datasets:
        raise TuneLabError(f"lab {name!r}: datasets={tuple(datasets)!r}: expected shipped datasets, some of "
                           f"{', '.join(SHIPPED_DATASETS)} (your own data: the full contract, docs/adding-a-lab.md)")
    chosen = dict(metrics or DEFAULT_METRICS)

    def decorate(setup: Setup) -> Setup:
        trainer = type(f"{config.__name__}Trainer", (LightTrainer,), {"setup": staticmethod(setup),
                                                                       "__module__": setup.__module__})
        module = SimpleNamespace(Trainer=trainer, load_data=load_images, report_figures=None, report_text=None,
                                 sample_images=None, __name__=setup.__module__)
        if setup.__module__ != "__main__":  # a file's lab reaches trial processes that cannot import that file
            cloudpickle.register_pickle_by_value(sys.modules[setup.__module__])
        earlier = LABS.get(name)
        if earlier is not None and getattr(earlier.module, "__name__", earlier.module) == setup.__module__:
            del LABS[name]  # the same cell or file run again (a notebook): the new definition replaces the old
        register_lab(name, module=module, datasets=tuple(datasets), description=description or (setup.__doc__ or name).strip().splitlines()[0],
                     metrics=chosen, metric=metric, gpu_fraction=gpu_fraction)(config)
        return setup

    return decorate
