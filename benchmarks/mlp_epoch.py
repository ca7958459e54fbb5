"""Lab 1 MLP: one epoch on MNIST three ways, same model, batch size, data and threads.

- `trainer`: tune-lab's real `trainables.mlp.Trainer` (what every trial runs).
- `lab_loop`: the course lab's style: a torchvision dataset with `ToTensor`, a shuffling
  `DataLoader` of batch 256, and `.item()` on every batch for the running loss/accuracy.
- `plain`: the fastest plain PyTorch loop written here by hand: pre-normalised tensors,
  shuffled index slices, fused Adam, forward / backward / step and nothing else.

Each is timed twice per repetition: its training pass alone, and its whole epoch, i.e. the
training pass plus the evaluation that loop makes every epoch to draw its per-epoch curves
(the lab: test loss and accuracy through a DataLoader with `.item()` per batch, as its
train/test curves need; the trainer: validation and test, which is what a trial reports; the
plain loop: the same two splits on its tensors). The trainer's epoch does more evaluation work
than the lab's (15,000 images against 10,000), so the whole-epoch ratio is conservative too.

Two networks, each trained by all three loops from the same seed on the same 55,000 training
images (MNIST's train set less tune-lab's 5,000 validation images):
- `lab_net`: the lab's own network (`faithful: true`: no dropout, ReLU + softmax on the output),
  which is what "the lab's epoch" runs;
- `default`: tune-lab's corrected default (plain logits, dropout 0.1 after each hidden layer).
  Dropout costs every loop the same ~0.3 s per epoch on this CPU, almost all of it in
  torch's serial random-number generator (`bernoulli_`, ~8 ns per element on one thread),
  which no loop can avoid without drawing different masks; so its ratio to the lab loop is
  lower.
Both use MLPConfig's Adam, lr 0.005, weight decay and cosine schedule. The lab loop skips normalisation (ToTensor only,
as the lab does): that only makes it faster, so the ratio against it is conservative.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.timing import epoch_rows, interleave, target
from trainables.data import SPLIT_SEED, VAL_SIZE, ImageData, load_images, resolve_data_dir
from labspec.hparams import MLPConfig
from trainables.mlp import MLP, Trainer


def _model_and_optimizer(cfg: MLPConfig, data: ImageData, steps: int, fused: bool | None):
    """The trainer's model, optimizer and schedule, built by hand for the two other loops.

    The lab writes `torch.optim.Adam(...)` with torch's defaults (fused=None); the plain loop
    asks for the fused kernel, the fastest Adam torch has on a CPU.
    """
    torch.manual_seed(cfg.seed)
    model = MLP(math.prod(data.shape), data.num_classes, faithful=cfg.faithful, dropout=cfg.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps)
    return model, optimizer, schedule


def _timed_epoch(train: Callable[[], Any], evaluate: Callable[[], Any]) -> dict[str, float]:
    """One epoch = a training pass, then the evaluation the loop makes every epoch; both timed."""
    start = time.perf_counter()
    train()
    trained = time.perf_counter()
    evaluate()
    return {"train_s": trained - start, "eval_s": time.perf_counter() - trained}


class LabLoop:
    """The lab's loop: torchvision dataset + ToTensor + DataLoader, `.item()` per batch."""

    def __init__(self, cfg: MLPConfig, data: ImageData, data_dir: str | None) -> None:
        from torch.utils.data import DataLoader, Subset
        from torchvision import datasets, transforms

        root = str(resolve_data_dir(data_dir))
        dataset = datasets.MNIST(root, train=True, transform=transforms.ToTensor())
        # The same training images as tune-lab's split: its shuffled order, less the validation images.
        train = np.random.default_rng(SPLIT_SEED).permutation(len(dataset))[VAL_SIZE:][: len(data.y_train)]
        self.loader = DataLoader(Subset(dataset, train.tolist()), batch_size=cfg.batch_size, shuffle=True,
                                 generator=torch.Generator().manual_seed(cfg.seed))
        test = datasets.MNIST(root, train=False, transform=transforms.ToTensor())
        self.test_loader = DataLoader(test, batch_size=cfg.batch_size)
        self.model, self.optimizer, self.schedule = _model_and_optimizer(cfg, data, len(self.loader), fused=None)

    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for images, labels in self.loader:
            outputs = self.model(images)
            loss = F.cross_entropy(outputs, labels)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
            total_loss += loss.item() * len(labels)
            correct += (outputs.argmax(1) == labels).sum().item()
            seen += len(labels)
        return {"train_loss": total_loss / seen, "train_acc": correct / seen}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The lab's per-epoch test pass, for its train/test curves."""
        self.model.eval()
        total_loss, correct, seen = 0.0, 0, 0
        for images, labels in self.test_loader:
            outputs = self.model(images)
            total_loss += F.cross_entropy(outputs, labels).item() * len(labels)
            correct += (outputs.argmax(1) == labels).sum().item()
            seen += len(labels)
        return {"test_loss": total_loss / seen, "test_acc": correct / seen}

    def epoch(self) -> dict[str, float]:
        return _timed_epoch(self.train_epoch, self.evaluate)


class PlainLoop:
    """The fastest hand-written loop: tensors prepared once, index slices, nothing per batch but the step."""

    def __init__(self, cfg: MLPConfig, data: ImageData, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.splits, self.batch = splits, cfg.batch_size
        self.x, self.y = splits["train"]
        steps = -(-len(self.y) // cfg.batch_size)
        self.model, self.optimizer, self.schedule = _model_and_optimizer(cfg, data, steps, fused=True)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        order = torch.randperm(len(self.y), generator=self.generator)
        for start in range(0, len(order), self.batch):
            idx = order[start : start + self.batch]
            loss = F.cross_entropy(self.model(self.x.index_select(0, idx)), self.y.index_select(0, idx))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
        return {"train_loss": float(loss.detach())}  # the last batch's: a plain loop keeps no epoch sums

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Accuracy on validation and test, each split in one forward pass."""
        self.model.eval()
        return {split: (self.model(x).argmax(1) == y).float().mean().item()
                for split, (x, y) in self.splits.items() if split != "train"}

    def epoch(self) -> dict[str, float]:
        return _timed_epoch(self.train_epoch, self.evaluate)


NETWORKS = {
    "lab_net": "the lab's MLP as written (faithful: no dropout, ReLU + softmax on the output)",
    "default": "tune-lab's corrected default MLP (logits, dropout 0.1)",
}


def run(quick: bool, reps: int, threads: int, data_dir: str | None = None) -> dict[str, Any]:
    """Interleaved epochs of three loops x two networks; targets: >= 4x the lab loop, <= 1.15x the plain loop."""
    torch.set_num_threads(threads)
    subset = 8192 if quick else None
    data = load_images("mnist", data_dir, subset=subset, allow_download=False)
    cases: dict[str, Callable[[], Any]] = {}
    for net in NETWORKS:
        # A long schedule: the learning rate hardly moves over the timed epochs.
        cfg = MLPConfig(epochs=1000, faithful=net == "lab_net")
        trainer = Trainer(cfg, data, torch.device("cpu"))
        plain = PlainLoop(cfg, data, trainer.splits)
        lab = LabLoop(cfg, data, data_dir)
        cases |= {f"{net}/trainer": lambda t=trainer: _timed_epoch(t.train_epoch, t.evaluate),
                  f"{net}/lab_loop": lab.epoch, f"{net}/plain": plain.epoch}
    timings = interleave(cases, reps)
    n = len(data.y_train)
    rows, train_s = epoch_rows(timings, n)
    ratios: dict[str, float] = {}
    targets = []
    for net in NETWORKS:
        vs_lab = timings.median(f"{net}/lab_loop") / timings.median(f"{net}/trainer")
        vs_plain = timings.median(f"{net}/trainer") / timings.median(f"{net}/plain")
        ratios |= {f"{net}: lab_loop_over_trainer": round(vs_lab, 3),
                   f"{net}: trainer_over_plain": round(vs_plain, 3),
                   f"{net}: training_pass_only_lab_loop_over_trainer":
                       round(train_s[f"{net}/lab_loop"] / train_s[f"{net}/trainer"], 3),
                   f"{net}: training_pass_only_trainer_over_plain":
                       round(train_s[f"{net}/trainer"] / train_s[f"{net}/plain"], 3)}
        targets += [target(f"mlp epoch ({net}): speed-up over the lab's loop style", vs_lab, ">=", 4.0),
                    target(f"mlp epoch ({net}): trainer time / hand-written loop time", vs_plain, "<=", 1.15)]
    return {
        "name": "mlp",
        "title": "Lab 1 MLP, one epoch on MNIST (training pass + the evaluation each loop makes per epoch)",
        "settings": {"dataset": data.name, "train_images": n, "batch_size": cfg.batch_size, "threads": threads,
                     "reps": reps, "networks": NETWORKS, "optimizer": cfg.optimizer, "lr_schedule": cfg.lr_schedule},
        "cases": rows,
        "ratios": ratios,
        "targets": targets,
        "notes": [f"lab loop: torchvision MNIST + ToTensor + DataLoader(batch {cfg.batch_size}, shuffle) "
                  "+ .item() per batch, then its test pass (10,000 images, DataLoader, .item() per batch); "
                  "trainer: trainables.mlp.Trainer.train_epoch + evaluate (validation 5,000 + test 10,000); "
                  "median_s = whole epoch; train_median_s = the training pass alone",
                  "dropout (default network only) costs every loop ~0.3 s per epoch in torch's serial "
                  "CPU random-number generator; the lab's network has none"],
    }
