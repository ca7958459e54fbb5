"""A lab that fits a line: y = Xw + b + noise, lab 1's first model (docs/adding-a-lab.md walks through it).

Registered by the tests as lab "linreg", exactly as a shipped lab is, except that the registration
sits here rather than in trainables/hparams.py (a shipped lab's must be torch-free, for the CLI).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from trainables.config import hp
from trainables.hparams import TrainConfig
from trainables.loop import Trainer as LoopTrainer, index_batches, make_optimizer
from trainables.registry import LABS, register_lab

TRUE_W, TRUE_B, NOISE = (2.0, -3.4), 4.2, 0.01  # the lab's own line


@dataclass
class LinRegConfig(TrainConfig):
    epochs: int = hp(3, min=1, max=1000)
    batch_size: int = hp(10, min=1, max=100_000)
    lr: float = hp(0.03, min=0.0, max=10.0)
    optimizer: Literal["sgd", "adam", "adadelta"] = "sgd"


if "linreg" not in LABS:  # pytest may import this file under two names
    register_lab("linreg", module=__name__, datasets=("synthetic",), description="y = Xw + b + noise, fitted by SGD",
                 metrics={"train_loss": "min", "val_loss": "min", "w_error": "min"}, metric="val_loss")(LinRegConfig)


@dataclass
class Points:
    """1,000 training and 200 validation points on the line (a LabData)."""

    name: str
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]

    @property
    def split_sizes(self) -> dict[str, int]:
        return {split: len(y) for split, y in self.y.items()}

    def trial_split(self, config: dict[str, Any]) -> str:
        return " / ".join(f"{n} {split}" for split, n in self.split_sizes.items())

    def checkpoint_info(self) -> dict[str, Any]:
        return {"name": self.name, "true_w": list(TRUE_W), "true_b": TRUE_B}


def load_data(dataset: str, data_dir: str | None = None, *, subset: int | None = None) -> Points:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, len(TRUE_W))).astype(np.float32)
    y = (x @ np.array(TRUE_W, dtype=np.float32) + TRUE_B + rng.normal(0, NOISE, 1200)).astype(np.float32)
    n = subset or 1000
    return Points(dataset, {"train": x[:n], "val": x[1000:]}, {"train": y[:n], "val": y[1000:]})


class Trainer(LoopTrainer):
    def __init__(self, cfg: LinRegConfig, data: Points, device: torch.device) -> None:
        super().__init__(cfg, data, device)
        self.x = {s: torch.tensor(v, device=device) for s, v in data.x.items()}
        self.y = {s: torch.tensor(v, device=device) for s, v in data.y.items()}
        self.model = nn.Linear(len(TRUE_W), 1).to(device)
        self.optimizer = make_optimizer(cfg, self.model.parameters())

    def train_epoch(self) -> dict[str, float]:
        total = 0.0
        for idx in index_batches(len(self.y["train"]), self.cfg.batch_size, self.device, self.generator):
            loss = nn.functional.mse_loss(self.model(self.x["train"][idx]).squeeze(1), self.y["train"][idx])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(idx)
        return {"train_loss": total / len(self.y["train"]), "samples": len(self.y["train"])}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        val_loss = nn.functional.mse_loss(self.model(self.x["val"]).squeeze(1), self.y["val"]).item()
        w_error = (self.model.weight[0] - torch.tensor(TRUE_W, device=self.device)).abs().max().item()
        return {"val_loss": val_loss, "w_error": w_error}


report_figures = report_text = sample_images = None  # the parts of the lab contract this lab leaves out
