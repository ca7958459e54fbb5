"""Lab 1's first model: linear regression on synthetic data y = Xw + b + noise (hyperparameters: LinRegConfig).

The lab draws points on a known line, w = (2, -3.4), b = 4.2, with Gaussian noise of std 0.01,
and fits one linear layer to them by minibatch SGD on the squared error. Because the line is
known, the fit can be checked against it: each epoch reports `w_error` (the largest |w_i - true w_i|)
and `b_error`, and the report sets the recovered w and b beside the true ones (lab 1 asks for them
within 0.05).

This is the smallest whole lab, and docs/adding-a-lab.md walks through it. Read top to bottom:
the data, the trainer (what one epoch does; the shared loop in trainables/loop.py does the rest),
then the report hooks.
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from labspec.hparams import LinRegConfig
from trainables.loop import Trainer as LoopTrainer, index_batches, load_checkpoint, make_optimizer

TRUE_W, TRUE_B, NOISE = (2.0, -3.4), 4.2, 0.01  # the lab's line
TRAIN_POINTS, VAL_POINTS = 1000, 200
TOLERANCE = 0.05  # lab 1's acceptance: each recovered parameter within this of the truth


# --------------------------------------------------------------------------- the data
@dataclass
class Points:
    """The training and validation points on the line (a labspec.registry.LabData)."""

    name: str
    x: dict[str, np.ndarray]  # split -> (n, 2) features
    y: dict[str, np.ndarray]  # split -> (n,) targets

    @property
    def split_sizes(self) -> dict[str, int]:
        return {split: len(y) for split, y in self.y.items()}

    def trial_split(self, config: dict[str, Any]) -> str:
        return " / ".join(f"{n:,} {split}" for split, n in self.split_sizes.items())

    def checkpoint_info(self) -> dict[str, Any]:
        """The true line goes with the checkpoint, so that a report can judge the fit from it alone."""
        return {"name": self.name, "true_w": list(TRUE_W), "true_b": TRUE_B, "noise": NOISE}


def load_data(dataset: str, data_dir: str | None = None, *, subset: int | None = None) -> Points:
    """1,000 training and 200 validation points, the same ones every time (seed 0): nothing to download.

    `subset` keeps the first N training points; the validation points never change.
    """
    if dataset != "synthetic":
        raise ValueError(f"unknown dataset {dataset!r}; known: synthetic")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(TRAIN_POINTS + VAL_POINTS, len(TRUE_W))).astype(np.float32)
    noise = rng.normal(0.0, NOISE, len(x))
    y = (x @ np.array(TRUE_W, dtype=np.float32) + TRUE_B + noise).astype(np.float32)
    n = min(subset or TRAIN_POINTS, TRAIN_POINTS)
    return Points(dataset, {"train": x[:n], "val": x[TRAIN_POINTS:]}, {"train": y[:n], "val": y[TRAIN_POINTS:]})


# --------------------------------------------------------------------------- the trainer
class Trainer(LoopTrainer):
    """One linear layer, 2 -> 1, trained on the squared error.

    Besides what every trainer keeps, it records the loss of every minibatch step (`step_losses`),
    saved with the checkpoint: the report's loss curve shows the fit converging inside the first
    epoch, which a curve of one point per epoch cannot.
    """

    cfg: LinRegConfig

    def __init__(self, cfg: LinRegConfig, data: Points, device: torch.device) -> None:
        super().__init__(cfg, data, device)
        # torch.tensor copies: arrays from Ray's object store are read-only views.
        self.x = {split: torch.tensor(v, device=device) for split, v in data.x.items()}
        self.y = {split: torch.tensor(v, device=device) for split, v in data.y.items()}
        self.model = nn.Linear(len(TRUE_W), 1).to(device)
        self.optimizer = make_optimizer(cfg, self.model.parameters())
        self.step_losses: list[float] = []
        self.true_w = torch.tensor(TRUE_W, device=device)

    def train_epoch(self) -> dict[str, float]:
        """One `.item()` a step would make every step wait for the device: the step losses stay there
        until the epoch ends and come back in one read, the same floats, summed in the same order."""
        x, y = self.x["train"], self.y["train"]
        losses, sizes = [], []
        for idx in index_batches(len(y), self.cfg.batch_size, self.device, self.generator):
            loss = nn.functional.mse_loss(self.model(x[idx]).squeeze(1), y[idx])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
            sizes.append(len(idx))
        steps = torch.stack(losses).tolist()
        self.step_losses += steps
        total = 0.0
        for step, size in zip(steps, sizes):
            total += step * size
        return {"train_loss": total / len(y), "samples": len(y)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        val_loss = nn.functional.mse_loss(self.model(self.x["val"]).squeeze(1), self.y["val"]).item()
        w_error = (self.model.weight[0] - self.true_w).abs().max().item()
        b_error = abs(self.model.bias.item() - TRUE_B)
        return {"val_loss": val_loss, "w_error": w_error, "b_error": b_error}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "step_losses": torch.tensor(self.step_losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.step_losses = state["step_losses"].tolist()


# --------------------------------------------------------------------------- the report hooks
def recovered(checkpoint_dir: str) -> list[tuple[str, float, float]]:
    """(parameter, true, recovered) for w_1, w_2 and b of the checkpoint's fitted line."""
    saved = load_checkpoint(checkpoint_dir)
    model, truth = saved["state"]["model"], saved["data"]
    fitted = [*model["weight"][0].tolist(), model["bias"].item()]
    return list(zip([f"w_{i + 1}" for i in range(len(truth["true_w"]))] + ["b"], [*truth["true_w"], truth["true_b"]], fitted))


def report_text(checkpoint_dir: str, data: Points) -> str:
    """A table of the recovered w and b against the true ones, each judged against lab 1's 0.05."""
    rows = recovered(checkpoint_dir)
    lines = ["## Recovered line against the true one", "",
             "| parameter | true | recovered | abs. error | within 0.05 |", "|---|---|---|---|---|"]
    for name, true, fit in rows:
        lines.append(f"| {name} | {true:g} | {fit:.4f} | {abs(fit - true):.4f} | {'yes' if abs(fit - true) <= TOLERANCE else 'no'} |")
    ok = all(abs(fit - true) <= TOLERANCE for _, true, fit in rows)
    lines += ["", f"{'Every' if ok else 'Not every'} parameter is within {TOLERANCE} of the truth "
                  f"(noise std {NOISE}, {data.split_sizes['train']:,} training points)."]
    return "\n".join(lines)


def report_figures(checkpoint_dir: str, data: Points, out_dir: pathlib.Path) -> list[tuple[str, str]]:
    """The loss of every SGD step (log scale, epochs marked) and the recovered parameters beside the true ones."""
    from matplotlib.figure import Figure

    saved = load_checkpoint(checkpoint_dir)
    steps = saved["state"]["step_losses"].tolist()
    per_epoch = len(steps) // saved["epoch"]
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, params_ax = fig.subplots(1, 2, width_ratios=(3, 2))
    loss_ax.plot(range(1, len(steps) + 1), steps, linewidth=1)
    loss_ax.set_yscale("log")
    for epoch in range(1, saved["epoch"]):
        loss_ax.axvline(epoch * per_epoch + 0.5, color="grey", linestyle=":", linewidth=1)
    loss_ax.axhline(NOISE ** 2, color="tab:red", linestyle="--", linewidth=1, label=f"noise variance ({NOISE}²)")
    loss_ax.set(xlabel="SGD step (dotted lines: epochs)", ylabel="minibatch squared error",
                title=f"Training loss per step, {saved['epoch']} epochs")
    loss_ax.legend(fontsize=9)
    loss_ax.grid(alpha=0.3)
    rows = recovered(checkpoint_dir)
    where = np.arange(len(rows))
    true_bars = params_ax.bar(where - 0.2, [t for _, t, _ in rows], 0.4, label="true", color="tab:grey")
    fit_bars = params_ax.bar(where + 0.2, [f for _, _, f in rows], 0.4, label="recovered", color="tab:blue")
    params_ax.bar_label(true_bars, fmt="%.2f", fontsize=8)
    params_ax.bar_label(fit_bars, fmt="%.3f", fontsize=8)
    params_ax.axhline(0, color="black", linewidth=0.8)
    params_ax.set_xticks(where, [name for name, _, _ in rows])
    params_ax.set_ylim(min(t for _, t, _ in rows) - 1, max(t for _, t, _ in rows) + 1)
    params_ax.set_title("Recovered parameters against the true ones")
    params_ax.legend(fontsize=9, loc="lower right")
    name = "linreg_fit.png"
    fig.savefig(pathlib.Path(out_dir) / name, dpi=110)
    worst = max(abs(f - t) for _, t, f in rows)
    return [(f"Loss per SGD step and the recovered line (largest error {worst:.4f}, acceptance {TOLERANCE})", name)]


sample_images = None  # the part of the lab contract (labspec.registry.LabModule) this lab leaves out
