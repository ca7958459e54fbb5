"""Training images/s of the resnet lab's Trainer vs a plain hand-written PyTorch loop.

Both train the same ResNet18 (same stem, seed, batch size, optimizer, device and precision)
on the same pre-normalised images held on the device, so the ratio is the cost of the
trainable's machinery (shuffled index batches, augment/autocast hooks, on-device metric
sums, the per-epoch sync). Epochs are interleaved through `benchmarks.timing.interleave`
(the harness's shared timing) so that load from other processes hits both alike; the
figure is the median over the repetitions. Part of `python -m benchmarks.run --only resnet`;
on its own:

    python -m benchmarks.resnet_throughput                 # CPU: 1 thread, ImageNet stem
    python -m benchmarks.resnet_throughput --stem cifar --images 2048 --threads 2
"""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.timing import case_row, interleave, target
from trainables.data import ImageData
from labspec.errors import DatasetUnavailable
from labspec.hparams import ResNetConfig
from trainables.resnet import ResNet18, Trainer

MIN_RATIO = 0.9  # the trainer keeps at least 90% of the plain loop's throughput


def synthetic_cifar(n: int, seed: int = 0) -> ImageData:
    """Random CIFAR-shaped uint8 images: throughput does not depend on what the pixels show."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    return ImageData("synthetic", [str(c) for c in range(10)], x, y, x[:1], y[:1], x[:1], y[:1],
                     (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))


def cifar_subset(n: int, data_dir: str | None) -> ImageData:
    """The first `n` CIFAR-10 training images of tune-lab's split, else synthetic ones of the same shape."""
    from trainables.data import load_images

    try:
        return load_images("cifar10", data_dir, subset=n, allow_download=False)
    except DatasetUnavailable:
        return synthetic_cifar(n)


class PlainLoop:
    """What one would write by hand: a model, fused Adam, shuffled slices, forward/backward/step."""

    def __init__(self, cfg: ResNetConfig, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        torch.manual_seed(cfg.seed)
        self.model = ResNet18(3, 10, stem=cfg.stem).to(device)
        self.on_gpu = device.type == "cuda"
        if self.on_gpu:
            self.model = self.model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.x, self.y, self.batch = x, y, cfg.batch_size
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, fused=True)  # torch's fastest Adam

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


def run(quick: bool, reps: int, threads: int, *, stem: str = "imagenet", images: int | None = None,
        batch_size: int = 64, device: str | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Interleaved training epochs of the Trainer and the plain loop; target: trainer >= 0.9x plain img/s."""
    torch.set_num_threads(threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    images = images or (128 if quick else 512)
    cfg = ResNetConfig(model="resnet18", stem=stem, batch_size=batch_size, epochs=1000)
    data = cifar_subset(images, data_dir)
    trainer = Trainer(cfg, data, dev)
    plain = PlainLoop(cfg, *trainer.splits["train"], dev)
    timings = interleave({"trainer": lambda: trainer.train_epoch()["samples"], "plain": plain.epoch}, reps)
    n = len(data.y_train)
    rate = {name: n / timings.median(name) for name in timings.seconds}
    ratio = rate["trainer"] / rate["plain"]
    return {
        "name": "resnet",
        "title": f"Lab 2 ResNet18 ({stem} stem), one training epoch on a CIFAR-10 subset",
        "settings": {"dataset": data.name, "train_images": n, "batch_size": batch_size, "stem": stem,
                     "device": str(dev), "threads": threads, "reps": reps},
        "cases": [case_row(name, secs, images_per_s=round(rate[name], 1)) for name, secs in timings.seconds.items()],
        "ratios": {"trainer_over_plain_images_per_s": round(ratio, 3)},
        "targets": [target("resnet: trainer img/s / plain loop img/s", ratio, ">=", MIN_RATIO)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stem", choices=["imagenet", "cifar"], default="imagenet")
    parser.add_argument("--images", type=int, default=1024, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=64, help="the lab's batch size")
    parser.add_argument("--reps", type=int, default=5, help="timed epochs of each, interleaved (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (a 1-CPU Ray trial uses 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    result = run(False, args.reps, args.threads, stem=args.stem, images=args.images,
                 batch_size=args.batch_size, device=args.device)
    for row in result["cases"]:
        print(f"  {row['case']:<8} {row['images_per_s']:8.1f} img/s  (median of {args.reps})")
    print(f"  ratio {result['ratios']['trainer_over_plain_images_per_s']:.3f}x (target >= {MIN_RATIO}x)")


if __name__ == "__main__":
    main()
