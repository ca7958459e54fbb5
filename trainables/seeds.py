"""Several seeds of one configuration, trained inside one trial.

Why one trial and not N: ASHA and Optuna must judge a configuration by its seed-mean, every
epoch. Ray's `Repeater` runs the seeds as separate trials, which ASHA would then stop one by
one (a lucky seed keeping a weak configuration alive); a trial that trains its seeds together
and reports their mean is compared as one. The trial reports the mean under the metric's own
name and each seed's value beside it (`val_acc/seed_3`), see `run_trial`.

A lab's `Trainer.seed_group` decides how its seeds train: one after another (`SeedSequence`,
right for every lab), or as one batched computation where the lab has one.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any, Callable, Protocol

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class OneSeed(Protocol):
    """What `SeedSequence` needs of a lab's one-seed trainer (a trainables.loop.Trainer)."""

    def train_epoch(self) -> dict[str, float]: ...
    def evaluate(self) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SeedGroup(Protocol):
    """What `run_trial` needs of a configuration's seeds; every mapping is keyed by seed."""

    seeds: list[int]

    def train_epoch(self) -> dict[int, dict[str, float]]:
        """One epoch of every live seed: each seed's `train_loss`, `samples`, ..."""

    def evaluate(self) -> dict[int, dict[str, float]]:
        """Validation and test metrics of every live seed."""

    def state_dicts(self) -> dict[int, dict[str, Any]]:
        """Each live seed's state in its lab Trainer's `state_dict` format."""

    def load_state_dicts(self, states: dict[int, dict[str, Any]]) -> None:
        """Restore the seeds in `states`; seeds missing from it are dropped (they had failed)."""

    def drop(self, seed: int) -> None:
        """Stop training `seed` (it diverged); the others go on."""


@dataclasses.dataclass
class _RandomState:
    """One seed's Python, NumPy and torch generators, so that the seeds' draws never interleave."""

    python: Any
    numpy: Any
    torch: torch.Tensor
    cuda: list[torch.Tensor] | None

    @classmethod
    def capture(cls) -> "_RandomState":
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        return cls(random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)

    def to_checkpoint(self) -> dict[str, Any]:
        """Plain values and tensors only (checkpoints load with weights_only=True)."""
        kind, keys, pos, has_gauss, gauss = self.numpy
        version, internal, gauss_next = self.python
        return {"python": [version, list(internal), gauss_next],
                "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
                "torch": self.torch, "cuda": self.cuda}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> "_RandomState":
        version, internal, gauss_next = saved["python"]
        kind, keys, pos, has_gauss, gauss = saved["numpy"]
        numpy_state = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
        return cls((version, tuple(internal), gauss_next), numpy_state, saved["torch"], saved["cuda"])

    def restore(self) -> None:
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch)
        # CUDA streams saved on a GPU host: restored where this process has as many GPUs, else
        # left as they are (a GPU checkpoint resumed on a CPU, or on another GPU count).
        if self.cuda is not None and torch.cuda.is_available() and torch.cuda.device_count() == len(self.cuda):
            torch.cuda.set_rng_state_all(self.cuda)


class SeedSequence:
    """The seeds trained one after another, each with its own trainer and random streams.

    Each seed's global generators are swapped in around its work, so seed s here draws exactly
    what a single-seed trial with seed s draws (its dropout masks, its init): the group is N
    independent runs, not N runs sharing one stream in an order that depends on N.
    """

    def __init__(self, trainer_cls: Callable[[Any, Any, torch.device], OneSeed], cfg: Any, data: Any,
                 device: torch.device, seeds: list[int]) -> None:
        self.seeds = list(seeds)
        self.trainers: dict[int, OneSeed] = {}
        self._random: dict[int, _RandomState] = {}
        for seed in self.seeds:
            seed_everything(seed)
            self.trainers[seed] = trainer_cls(dataclasses.replace(cfg, seed=seed), data, device)
            self._random[seed] = _RandomState.capture()

    def _each(self, work) -> dict[int, Any]:
        out = {}
        for seed in self.seeds:
            self._random[seed].restore()
            out[seed] = work(self.trainers[seed])
            self._random[seed] = _RandomState.capture()
        return out

    def train_epoch(self) -> dict[int, dict[str, float]]:
        return self._each(lambda trainer: trainer.train_epoch())

    def evaluate(self) -> dict[int, dict[str, float]]:
        return self._each(lambda trainer: trainer.evaluate())

    def state_dicts(self) -> dict[int, dict[str, Any]]:
        """Each seed's Trainer state, plus its global random streams (`global_rng`: dropout masks ...)."""
        return {seed: {**self.trainers[seed].state_dict(), "global_rng": self._random[seed].to_checkpoint()}
                for seed in self.seeds}

    def load_state_dicts(self, states: dict[int, dict[str, Any]]) -> None:
        """Each seed's trainer state and, where the checkpoint has them in this group's form, its
        global random streams. A batched group's checkpoint (`ClassifierSeedBatch`, written on a
        GPU) holds one device stream per seed instead, which a CPU stream cannot continue: those
        seeds go on with the streams they were built with (other dropout masks than the
        uninterrupted GPU trial's, which the GPU draws another way anyway)."""
        for seed in list(self.seeds):
            if seed in states:
                self.trainers[seed].load_state_dict(states[seed])
                if "python" in states[seed].get("global_rng", {}):
                    self._random[seed] = _RandomState.from_checkpoint(states[seed]["global_rng"])
            else:
                self.drop(seed)

    def drop(self, seed: int) -> None:
        self.seeds.remove(seed)
        del self.trainers[seed], self._random[seed]
