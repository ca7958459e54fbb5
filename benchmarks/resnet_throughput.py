"""Training images/s of the resnet lab's Trainer vs a plain hand-written PyTorch loop.

Both train the same ResNet18 (same stem, seed, batch size, optimizer, device and precision)
on the same pre-normalised images held on the device, so the ratio is the cost of the
trainable's machinery (shuffled index batches, augment/autocast hooks, on-device metric
sums, the per-epoch sync). Runs alternate (trainer, plain, plain, trainer, ...) so that
load from other processes hits both alike; the figure is the median over the repetitions.

    python benchmarks/resnet_throughput.py                 # CPU: 1 thread, ImageNet stem
    python benchmarks/resnet_throughput.py --stem cifar --images 2048 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from trainables.data import ImageData
from trainables.hparams import ResNetConfig
from trainables.resnet import ResNet18, Trainer


def synthetic_cifar(n: int, seed: int = 0) -> ImageData:
    """Random CIFAR-shaped uint8 images: throughput does not depend on what the pixels show."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    return ImageData("synthetic", [str(c) for c in range(10)], x, y, x[:1], y[:1], x[:1], y[:1],
                     (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))


class PlainLoop:
    """What one would write by hand: a model, Adam, shuffled slices, forward/backward/step."""

    def __init__(self, cfg: ResNetConfig, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        torch.manual_seed(cfg.seed)
        self.model = ResNet18(3, 10, stem=cfg.stem).to(device)
        self.on_gpu = device.type == "cuda"
        if self.on_gpu:
            self.model = self.model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.x, self.y, self.batch = x, y, cfg.batch_size
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    def epoch(self) -> int:
        self.model.train()
        order = torch.randperm(len(self.y), device=self.x.device)
        for start in range(0, len(order), self.batch):
            idx = order[start : start + self.batch]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.on_gpu):
                loss = F.cross_entropy(self.model(self.x[idx]).float(), self.y[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if self.on_gpu:
            torch.cuda.synchronize()
        return len(order)


def timed(step) -> float:
    start = time.perf_counter()
    samples = step()
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stem", choices=["imagenet", "cifar"], default="imagenet")
    parser.add_argument("--images", type=int, default=1024, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=64, help="the lab's batch size")
    parser.add_argument("--reps", type=int, default=5, help="timed epochs of each, interleaved (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (a 1-CPU Ray trial uses 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = ResNetConfig(model="resnet18", stem=args.stem, batch_size=args.batch_size, epochs=1000)
    data = synthetic_cifar(args.images)
    trainer = Trainer(cfg, data, device)
    x, y = trainer.splits["train"]
    plain = PlainLoop(cfg, x, y, device)

    def trainer_epoch() -> int:
        return int(trainer.train_epoch()["samples"])

    trainer_epoch(), plain.epoch()  # warm-up: allocator, kernels, Adam state
    rates: dict[str, list[float]] = {"trainer": [], "plain": []}
    for rep in range(args.reps):
        pair = [("trainer", trainer_epoch), ("plain", plain.epoch)]
        for name, step in pair if rep % 2 == 0 else pair[::-1]:
            rates[name].append(timed(step))
        print(f"rep {rep + 1}: trainer {rates['trainer'][-1]:.1f} img/s, plain {rates['plain'][-1]:.1f} img/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\nResNet18 ({args.stem} stem), batch {args.batch_size}, {args.images} images/epoch, {device}"
          f"{'' if device.type == 'cuda' else f', {args.threads} thread(s)'}, median of {args.reps}:")
    print(f"  trainer {med['trainer']:.1f} img/s   plain loop {med['plain']:.1f} img/s   "
          f"ratio {med['trainer'] / med['plain']:.3f}x (target >= 0.9x)")


if __name__ == "__main__":
    main()
