"""The train and evaluation steps shared by the image-classification labs (mlp, resnet).

A classification lab subclasses `ClassifierTrainer` and says only what differs: its model
and how its outputs become a loss. A lab whose network has a grouped twin (N copies computed
side by side, `ClassifierTrainer.group_models`) can also train a configuration's seeds as one
computation: `ClassifierSeedBatch`, through the same training and evaluation passes.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
from abc import abstractmethod
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from trainables.data import ImageData
from trainables.loop import Trainer, index_batches, make_optimizer, make_schedule
from trainables.seeds import seed_everything

EVAL_BATCH = 2048


# The last tensors made, kept with the arrays they came from (which keeps those arrays' buffers
# alive, so that no other array can take their address while an entry stands).
_MADE: collections.OrderedDict[tuple, tuple[tuple, Any]] = collections.OrderedDict()
_MADE_MAX = 6  # train, val, test of one dataset, for up to two uses (a lab's classifier and its own)


def _buffer(a: Any) -> tuple:
    """Where an array's values are: address, shape, strides and type (a view of the same bytes has the same)."""
    interface = a.__array_interface__
    return interface["data"][0], interface["shape"], interface["strides"], interface["typestr"]


def made_once(arrays: tuple[Any, ...], how: tuple, make: Callable[[], Any]) -> Any:
    """`make()`, or what it made before for the same arrays made the same way (`how`: hashable).

    Ray reuses a trial process for the next trial (`reuse_actors`), and every trial gets the
    search's data again as read-only views of the same object-store buffer; a trial of N seeds
    builds N trainers. Making the device tensors anew each time cost ~0.1 s per trial on 1,000 +
    15,000 MNIST images and ~0.5 s on the full 70,000, and N device copies of the data per trial.
    Nothing writes into these tensors (batches are gathered copies), so trainers can share them.
    """
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return make()
    key = (*map(_buffer, arrays), *how, torch.get_default_dtype())  # the default dtype: float tensors take it
    if key in _MADE:
        _MADE.move_to_end(key)
        return _MADE[key][1]
    made = _MADE[key] = (arrays, make())
    while len(_MADE) > _MADE_MAX:
        _MADE.popitem(last=False)
    return made[1]


def to_device_tensors(x, y, mean, std, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images -> normalised float32 on `device`; the same tensors again for the same arrays (`made_once`)."""
    how = (tuple(map(float, mean)), tuple(map(float, std)), str(device))
    return made_once((x, y), how, lambda: _normalised(x, y, mean, std, device))


def _normalised(x, y, mean, std, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # torch.tensor copies: arrays from Ray's object store are read-only views.
    images = torch.tensor(x, device=device, dtype=torch.float32).div_(255.0)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return (images - m) / s, torch.tensor(y, device=device)


class ClassifierTrainer(Trainer):
    def __init__(self, cfg: Any, data: ImageData, device: torch.device) -> None:
        super().__init__(cfg, data, device)
        self.splits = {
            split: to_device_tensors(getattr(data, f"x_{split}"), getattr(data, f"y_{split}"), data.mean, data.std, device)
            for split in ("train", "val", "test")
        }
        self.num_classes = data.num_classes
        self.model = self.build_model(data).to(device)
        self.optimizer = make_optimizer(cfg, self.model.parameters())
        steps = -(-len(data.y_train) // cfg.batch_size)
        self.scheduler = make_schedule(cfg, self.optimizer, steps)

    @abstractmethod
    def build_model(self, data: ImageData) -> nn.Module: ...

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """A training batch as the model should see it (random crops, flips ...); identity here."""
        return images

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context of forward passes and losses (e.g. bf16 autocast on a GPU); none here."""
        return contextlib.nullcontext()

    def group_models(self, models: Sequence[nn.Module], streams: Sequence[torch.Generator]) -> nn.Module:
        """`models` (one per seed) as one module on (B, N, ...) batches, for `ClassifierSeedBatch`.

        Its state_dict must have each model's keys, each tensor the N models' stacked on a new
        first dim, and its parameters the models' order; dropout draws seed k's masks from
        `streams[k]`. Labs whose network has such a twin override this (mlp).
        """
        raise NotImplementedError(f"{type(self).__module__} has no grouped network: its seeds train one after another")

    def train_epoch(self) -> dict[str, float]:
        x, y = self.splits["train"]
        # index_select: the same gather as x[idx], ~40% faster on a CPU (no generic indexing path).
        batches = ((self.augment(x.index_select(0, idx)), y.index_select(0, idx))
                   for idx in index_batches(len(y), self.cfg.batch_size, self.device, self.generator))
        loss_sum, correct = train_pass(self.model, self.optimizer, self.scheduler, batches, self.loss, self.autocast)
        n = len(y)
        return {"train_loss": loss_sum.item() / n, "train_acc": correct.item() / n, "samples": n}

    def evaluate_split(self, split: str) -> tuple[float, float]:
        x, y = self.splits[split]
        batches = ((x.index_select(0, idx), y.index_select(0, idx))
                   for idx in index_batches(len(y), EVAL_BATCH, self.device, None))
        loss_sum, correct = eval_pass(self.model, batches, self.loss, self.autocast)
        return loss_sum.item() / len(y), correct.item() / len(y)

    def evaluate(self) -> dict[str, float]:
        metrics = {}
        for split in ("val", "test"):
            metrics[f"{split}_loss"], metrics[f"{split}_acc"] = self.evaluate_split(split)
        return metrics


Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def train_pass(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, batches: Batches, loss: Loss,
               autocast: Callable[[], contextlib.AbstractContextManager]) -> tuple[torch.Tensor, torch.Tensor]:
    """One training pass: the loop of `ClassifierTrainer` and of `ClassifierSeedBatch` alike.

    `loss` gives one loss, or one per seed (shape (N,)) for a seed batch; their sum is
    minimised, so each seed's gradient is its own loss's. Returns `_sums` of the pass.
    """
    model.train()

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast():
            outputs = model(inputs)
            losses = loss(outputs, targets)
        optimizer.zero_grad(set_to_none=True)
        (losses if losses.dim() == 0 else losses.sum()).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return outputs, losses

    return _sums(batches, step)


@torch.no_grad()
def eval_pass(model: nn.Module, batches: Batches, loss: Loss,
              autocast: Callable[[], contextlib.AbstractContextManager]) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation twin of `train_pass`: its `_sums`, the model in eval mode and no gradient."""
    model.eval()

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast():
            outputs = model(inputs)
            return outputs, loss(outputs, targets)

    return _sums(batches, step)


def _sums(batches: Batches, step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The sums of loss x batch size and of correct predictions (per seed for a seed batch) over
    `batches`, each batch through `step` (outputs, losses); still on the device: one sync per
    epoch, not one `.item()` per batch."""
    loss_sum: Any = 0
    correct: Any = 0
    for inputs, targets in batches:
        outputs, losses = step(inputs, targets)
        loss_sum = loss_sum + losses.detach().float() * len(targets)
        correct = correct + (outputs.detach().argmax(-1) == targets).sum(0)
    return loss_sum, correct


def _seed_stream(device: torch.device) -> torch.Generator:
    """A generator that goes on from where `device`'s global stream stands now.

    Built right after a seed's model, it draws what a single-seed trial would draw next from
    the global stream: its dropout masks.
    """
    stream = torch.Generator(device)
    if device.type == "cpu":
        stream.set_state(torch.get_rng_state())
    elif device.type == "cuda":
        stream.set_state(torch.cuda.get_rng_state(device))
    else:  # another accelerator: at least each seed its own stream
        stream.manual_seed(torch.initial_seed())
    return stream


class ClassifierSeedBatch:
    """A configuration's seeds trained as one computation: a `SeedGroup` for classifier labs.

    Why: a trial of N seeds one after another (`SeedSequence`) costs N trials; on a GPU, where
    a small network's step is bound by kernel launches, N seeds side by side cost about one.

    The lab's grouped network (`group_models`) computes N copies of its model on (B, N, ...)
    batches, each seed's images gathered in that seed's own shuffled order. Each seed is what a
    single-seed trial with that seed is: its model is built after `seed_everything(seed)`, its
    batch order comes from `torch.Generator().manual_seed(seed)` as in `Trainer.__init__`, and
    its dropout masks from its own copy of the global stream (`_seed_stream`). Its loss is the
    lab's own, per seed (vmapped); the sum is minimised, and the lab's optimizer (Adam, SGD,
    Adadelta act element by element) and schedule run once over the stacked parameters, which
    updates each seed as its own trial would. On a CPU each seed then matches a single-seed
    Trainer up to float rounding (~4e-12 in float64; in float32 Adam's first steps turn
    rounding-level gradients into +-lr moves, up to ~1e-2 on a weight after an epoch; see
    tests/test_seed_batch.py); on a GPU torch's fused dropout draws its masks another way, so
    there they differ (same distribution).

    Checkpoints are per seed, in the lab Trainer's `state_dict` format, so a seed's state loads
    into the plain model. `drop(seed)` rebuilds the stacked tensors without that seed: a
    diverged seed costs nothing further. Labs with random augmentation are not supported
    (their draws would have to be per seed too).
    """

    def __init__(self, trainer_cls: type[ClassifierTrainer], cfg: Any, data: ImageData, device: torch.device,
                 seeds: Sequence[int]) -> None:
        if trainer_cls.augment is not ClassifierTrainer.augment:
            raise NotImplementedError(f"{trainer_cls.__module__} augments its batches: no batched seeds")
        self.seeds, self.cfg, self.device = list(seeds), cfg, device
        self.shuffle: dict[int, torch.Generator] = {}
        self.streams: dict[int, torch.Generator] = {}
        models = []
        for seed in self.seeds:
            seed_everything(seed)
            if not models:  # the first seed's trainer: the data on the device, the lab's loss, a model to copy
                self.trainer = trainer_cls(dataclasses.replace(cfg, seed=seed), data, device)
                models.append(self.trainer.model)
            else:
                models.append(self.trainer.build_model(data).to(device))
            self.shuffle[seed] = torch.Generator().manual_seed(seed)
            self.streams[seed] = _seed_stream(device)
        self.steps = -(-len(data.y_train) // cfg.batch_size)
        self.loss = torch.vmap(self.trainer.loss, in_dims=1)  # (B, N, C), (B, N) -> (N,): each seed's own loss
        self._assemble(models)

    def _assemble(self, models: list[nn.Module]) -> None:
        """The grouped model of the live seeds' `models`, and a fresh optimizer and schedule over it."""
        self.model = self.trainer.group_models(models, [self.streams[seed] for seed in self.seeds])
        self.optimizer = make_optimizer(self.cfg, self.model.parameters())
        self.scheduler = make_schedule(self.cfg, self.optimizer, self.steps)

    def _train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(B, N, ...) images and (B, N) labels: column k is seed k's next batch."""
        x, y = self.trainer.splits["train"]
        orders = [index_batches(len(y), self.cfg.batch_size, self.device, self.shuffle[seed]) for seed in self.seeds]
        for per_seed in zip(*orders):
            idx = torch.stack(per_seed, dim=1).flatten()  # image b of every seed, then b + 1 ...
            yield x.index_select(0, idx).unflatten(0, (-1, len(per_seed))), y.index_select(0, idx).view(-1, len(per_seed))

    def _eval_batches(self, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every seed sees the same images: each batch expanded (a view, no copy) to (B, N, ...)."""
        x, y = self.trainer.splits[split]
        n = len(self.seeds)
        for idx in index_batches(len(y), EVAL_BATCH, self.device, None):
            inputs, targets = x.index_select(0, idx), y.index_select(0, idx)
            yield inputs.unsqueeze(1).expand(-1, n, *inputs.shape[1:]), targets.unsqueeze(1).expand(-1, n)

    def _per_seed(self, split: str, loss_sum: torch.Tensor, correct: torch.Tensor, n: int) -> dict[int, dict[str, float]]:
        """Sums over a split -> each seed's `{split}_loss` and `{split}_acc`, as ClassifierTrainer computes them."""
        return {seed: {f"{split}_loss": loss / n, f"{split}_acc": hits / n}
                for seed, loss, hits in zip(self.seeds, loss_sum.tolist(), correct.tolist())}

    def train_epoch(self) -> dict[int, dict[str, float]]:
        n = len(self.trainer.splits["train"][1])
        batches = self._train_batches()
        sums = train_pass(self.model, self.optimizer, self.scheduler, batches, self.loss, self.trainer.autocast)
        return {seed: {**metrics, "samples": n} for seed, metrics in self._per_seed("train", *sums, n).items()}

    def evaluate(self) -> dict[int, dict[str, float]]:
        metrics: dict[int, dict[str, float]] = {seed: {} for seed in self.seeds}
        for split in ("val", "test"):
            sums = eval_pass(self.model, self._eval_batches(split), self.loss, self.trainer.autocast)
            for seed, values in self._per_seed(split, *sums, len(self.trainer.splits[split][1])).items():
                metrics[seed] |= values
        return metrics

    def state_dicts(self) -> dict[int, dict[str, Any]]:
        """Seed k's slice of every stacked tensor: the state a single-seed Trainer would save."""
        model, optimizer = self.model.state_dict(), self.optimizer.state_dict()
        stacked = [p.shape for p in self.model.parameters()]
        states = {}
        for k, seed in enumerate(self.seeds):
            states[seed] = {
                "model": {key: value[k].clone() for key, value in model.items()},
                "optimizer": {
                    "state": {j: {key: _take(value, k, stacked[j]) for key, value in entry.items()}
                              for j, entry in optimizer["state"].items()},
                    "param_groups": copy.deepcopy(optimizer["param_groups"]),
                },
            }
            if self.scheduler is not None:
                states[seed]["scheduler"] = self.scheduler.state_dict()
            states[seed]["rng"] = {"generator": self.shuffle[seed].get_state()}  # as Trainer.state_dict names it
            states[seed]["global_rng"] = {"stream": self.streams[seed].get_state()}  # its dropout masks
        return states

    def load_state_dicts(self, states: dict[int, dict[str, Any]]) -> None:
        """Restack the seeds in `states` (single-seed Trainer states); seeds missing from it are dropped."""
        for seed in [seed for seed in self.seeds if seed not in states]:
            self.seeds.remove(seed)
            del self.shuffle[seed], self.streams[seed]
        if not self.seeds:
            raise ValueError(f"none of the seeds in these states ({sorted(states)}) is one of this group's")
        models = []
        for seed in self.seeds:
            models.append(copy.deepcopy(self.trainer.model))
            models[-1].load_state_dict(states[seed]["model"])
        self._assemble(models)
        single = [p.shape for p in self.trainer.model.parameters()]
        optimizers = [states[seed]["optimizer"] for seed in self.seeds]
        self.optimizer.load_state_dict({
            "state": {j: {key: _stack([o["state"][j][key] for o in optimizers], single[int(j)]) for key in entry}
                      for j, entry in optimizers[0]["state"].items()},
            "param_groups": optimizers[0]["param_groups"],
        })
        first = states[self.seeds[0]]
        if self.scheduler is not None and "scheduler" in first:
            self.scheduler.load_state_dict(first["scheduler"])
        for seed in self.seeds:  # the streams as saved, where the states have them
            if "generator" in states[seed].get("rng", {}):
                self.shuffle[seed].set_state(states[seed]["rng"]["generator"])
            if "stream" in states[seed].get("global_rng", {}):
                self.streams[seed].set_state(states[seed]["global_rng"]["stream"])

    def drop(self, seed: int) -> None:
        """Rebuild the stacked tensors without `seed`; its shuffling and dropout streams go with it."""
        others = {s: state for s, state in self.state_dicts().items() if s != seed}
        if others:
            self.load_state_dicts(others)
        else:  # the last seed: run_trial then fails the trial
            self.seeds.remove(seed)


def _take(value: Any, k: int, stacked: torch.Size) -> Any:
    """Seed k's part of an optimizer state entry: a slice if stacked like its parameter, else the
    entry every seed shares (Adam's step)."""
    if isinstance(value, torch.Tensor) and value.shape == stacked:
        return value[k].clone()
    return value.clone() if isinstance(value, torch.Tensor) else value


def _stack(values: list[Any], single: torch.Size) -> Any:
    """The seeds' optimizer state entries as one: stacked if shaped like the parameter, else the first
    (all equal; copied, since the optimizer updates Adam's step in place and `values` may be in use)."""
    if isinstance(values[0], torch.Tensor):
        return torch.stack(values) if values[0].shape == single else values[0].clone()
    return values[0]
