"""Lab 2: LeNet-5 and ResNet18 on CIFAR-10 (also MNIST / Fashion-MNIST); settings: ResNetConfig.

Read top to bottom: the two networks, the on-device augmentation, the trainer (which only
says what differs from the shared classifier step in trainables/classify.py), then the
report figures drawn from a saved checkpoint.

The lab's ResNet18 keeps the ImageNet stem (7x7 stride-2 conv + max-pool), which shrinks a
32x32 CIFAR image to 8x8 before the first residual block: that, and training without
augmentation, is why the students saw accuracy "below the paper". `faithful: true` is that
network as written; the default uses the CIFAR stem (3x3 stride 1, no pool).
"""
from __future__ import annotations

import contextlib
import math
import pathlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.classify import ClassifierTrainer
from trainables.data import ImageData
from trainables.data import load_images as load_data  # noqa: F401  (the lab's data, for the driver)
from labspec.hparams import ResNetConfig

CROP_PADDING = 4  # pixels of padding before the random crop (the usual CIFAR recipe)


# --------------------------------------------------------------------------- the networks
class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max-pooling, as PyTorch course labs write it.

    conv5x5(6) -> pool -> conv5x5(16) -> pool -> 120 -> 84 -> classes. A 28x28 input is
    padded by 2 in the first conv so that both 1x28x28 and 3x32x32 images reach the
    classifier as 16x5x5 maps, which is the original LeNet-5 geometry.
    """

    def __init__(self, shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, _ = shape
        pad = max(0, (32 - height) // 2)
        self.stages = nn.ModuleList([
            nn.Sequential(nn.Conv2d(channels, 6, 5, padding=pad), nn.ReLU()),
            nn.MaxPool2d(2),
            nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU()),
            nn.MaxPool2d(2),
        ])
        side = (height + 2 * pad - 4) // 2
        side = (side - 4) // 2
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )
        self.stage_names = ["conv1 + ReLU", "pool1", "conv2 + ReLU", "pool2"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


class BasicBlock(nn.Module):
    """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus the input (1x1 conv when the shape changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """The lab's ResNet18: stem -> four stages of two BasicBlocks (64, 128, 256, 512) -> GAP -> Linear.

    stem="imagenet": conv7x7 stride 2 -> BN -> ReLU -> maxpool3 stride 2 (the lab's network);
    stem="cifar": conv3x3 stride 1 -> BN -> ReLU, keeping 32x32 resolution into stage 1.
    """

    WIDTHS = (64, 128, 256, 512)

    def __init__(self, in_channels: int, num_classes: int, stem: str = "cifar") -> None:
        super().__init__()
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                nn.MaxPool2d(3, 2, 1),
            )
        elif stem == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        else:
            raise ValueError(f"unknown stem {stem!r}; expected imagenet or cifar")
        stages, width = [], 64
        for i, out in enumerate(self.WIDTHS):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(width, out, stride), BasicBlock(out, out, 1)))
            width = out
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))
        self.stage_names = [f"stage {i + 1}" for i in range(len(self.WIDTHS))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def build_network(cfg: ResNetConfig, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The network a config asks for; `faithful` is the lab's ResNet18 (ImageNet stem)."""
    if cfg.model == "lenet":
        return LeNet5(shape, num_classes)
    return ResNet18(shape[0], num_classes, stem="imagenet" if cfg.faithful else cfg.stem)


@torch.no_grad()
def stage_outputs(model: nn.Module, image: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The feature maps after each of the network's first four stages, for one (1, C, H, W) image."""
    x = model.stem(image) if hasattr(model, "stem") else image
    maps = []
    for name, stage in zip(model.stage_names, model.stages):
        x = stage(x)
        maps.append((name, x[0].float()))
    return maps


# --------------------------------------------------------------------------- augmentation
def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    """Random crop after zero-padding by `padding`, and a random horizontal flip, per image.

    Batched tensor ops on the images' device (one gather, one `where`), so augmentation
    costs a few kernels per batch instead of a PIL round trip per sample. Zero is the mean
    colour here, since images are already normalised. Batch order is unchanged.
    """
    n, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=generator)
    rows = (dy + torch.arange(h, device=device)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    chan = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)
    cropped = padded[batch, chan, rows, cols]
    flip = torch.rand(n, device=device, generator=generator).view(n, 1, 1, 1) < 0.5
    return torch.where(flip, cropped.flip(3), cropped)


# --------------------------------------------------------------------------- the trainer
class Trainer(ClassifierTrainer):
    """ResNetConfig -> network; bf16 autocast and a channels_last model on a GPU, float32 on the CPU.

    The images stay the NCHW tensors `ClassifierTrainer` shares between every trainer of the
    process (`to_device_tensors`): one device copy per trial, however many seeds it trains
    (`--repeats`). A channels_last copy per trainer would gain nothing: batches are gathered
    with `index_select`, which returns NCHW whatever the layout of its source, and the first
    conv of a channels_last model takes an NCHW batch to channels_last itself (cuDNN picks
    that layout when either the input or the weight has it), after autocast has halved it.
    """

    cfg: ResNetConfig

    def __init__(self, cfg: ResNetConfig, data: ImageData, device: torch.device) -> None:
        self.on_gpu = device.type == "cuda"
        super().__init__(cfg, data, device)
        # Crops and flips draw from their own generator on the trial's device (seeded: reproducible).
        self.augment_generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    def build_model(self, data: ImageData) -> nn.Module:
        model = build_network(self.cfg, data.shape, data.num_classes)
        return model.to(memory_format=torch.channels_last) if self.on_gpu else model

    def state_dict(self) -> dict[str, Any]:
        """`Trainer.state_dict` plus the augmentation generator: a resumed trial draws the crops
        and flips the uninterrupted one would have drawn next, not its first epoch's again."""
        state = super().state_dict()
        state["rng"]["augment"] = self.augment_generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state.get("rng", {}).get("augment")
        if saved is not None:  # absent in checkpoints saved before issue 35: the crops restart from the seed
            # A generator's state is a CPU byte tensor on every device (a CUDA generator's too), and a
            # checkpoint may have been loaded onto the trial's device.
            self.augment_generator.set_state(saved.cpu())

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.on_gpu:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        smoothing = 0.0 if self.cfg.faithful else self.cfg.label_smoothing
        return F.cross_entropy(outputs.float(), targets, label_smoothing=smoothing)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        if not self.cfg.augment or self.cfg.faithful:
            return images
        return random_crop_flip(images, self.augment_generator)


# --------------------------------------------------------------------------- report figures
def load_checkpoint_model(checkpoint_dir: str) -> tuple[nn.Module, dict[str, Any]]:
    """The network saved by `run_trial` in `checkpoint_dir` (or a checkpoint.pt path), in eval mode, on the CPU."""
    from labspec.config import config_from_dict
    from trainables.loop import load_checkpoint

    saved = load_checkpoint(checkpoint_dir)
    cfg = config_from_dict(ResNetConfig, saved["config"])
    info = saved["data"]
    model = build_network(cfg, tuple(info["shape"]), len(info["classes"]))
    model.load_state_dict(saved["state"]["model"])
    return model.eval(), saved


@torch.no_grad()
def _predict(model: nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([model(images[i : i + batch]).argmax(1) for i in range(0, len(images), batch)])


def _feature_grid(fig, name: str, maps: torch.Tensor, image_side: int, shown: int = 16) -> None:
    """The `shown` most active channels of one stage's (C, H, W) output on one shared colour scale.

    One scale for the whole stage keeps strong and weak channels comparable (and a 1x1 map,
    which is what the ImageNet stem leaves of a 32x32 image by stage 4, still says something);
    maps of 2x2 or less also print their values.
    """
    strongest = maps.mean(dim=(1, 2)).argsort(descending=True)[: min(shown, len(maps))]
    chosen = maps[strongest]
    low, high = min(0.0, float(chosen.min())), max(float(chosen.max()), 1e-6)
    cols = min(8, len(strongest))
    rows = math.ceil(len(strongest) / cols)
    axes = fig.subplots(rows, cols, squeeze=False)
    side = maps.shape[-1]
    for ax in axes.flat:
        ax.axis("off")
    for ax, channel, image in zip(axes.flat, strongest.tolist(), chosen):
        shown_image = ax.imshow(image.numpy(), cmap="viridis", vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(f"ch {channel}", fontsize=8)
        if side <= 2:
            for (r, c), value in np.ndenumerate(image.numpy()):
                ax.text(c, r, f"{value:.2g}", ha="center", va="center", fontsize=7,
                        color="black" if value > (low + high) / 2 else "white")
    fig.colorbar(shown_image, ax=axes, shrink=0.9, label="activation")
    which = f"all {len(maps)} channels" if len(strongest) == len(maps) else f"the {len(strongest)} most active of {len(maps)} channels"
    fig.suptitle(f"{name}: {which} (most active first), {side}x{side} maps from a {image_side}x{image_side} input",
                 fontsize=10)


def report_figures(checkpoint_dir: str, data: ImageData, out_dir: pathlib.Path) -> list[tuple[str, str]]:
    """The lab's figures for a finished trial, written as PNGs into `out_dir`.

    One test image and the feature maps after each of the first four stages of the network
    (the lab's "feature maps of the first four layers"), the test-set confusion matrix and
    the accuracy of each class. Images are normalised with the statistics saved in the
    checkpoint, i.e. those the model was trained with. Returns (caption, file name) pairs.
    """
    from matplotlib.figure import Figure

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, saved = load_checkpoint_model(checkpoint_dir)
    info = saved["data"]
    classes = list(info["classes"])
    mean = torch.tensor(info["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(info["std"]).view(1, -1, 1, 1)
    images = (torch.tensor(data.x_test, dtype=torch.float32) / 255.0 - mean) / std
    labels = torch.tensor(data.y_test)
    predicted = _predict(model, images)
    what = f"{saved['config']['model']} on {info['name']}, epoch {saved['epoch']}"
    figures: list[tuple[str, str]] = []

    # One test image, then what each stage of the network makes of it.
    raw = data.x_test[0].transpose(1, 2, 0)
    fig = Figure(figsize=(3.2, 3.4))
    ax = fig.subplots()
    ax.imshow(raw.squeeze(-1) if raw.shape[-1] == 1 else raw, cmap="gray" if raw.shape[-1] == 1 else None,
              interpolation="nearest")
    ax.axis("off")
    truth, guess = classes[int(labels[0])], classes[int(predicted[0])]
    ax.set_title(f"test image 0: {truth}\npredicted: {guess}", fontsize=10)
    fig.savefig(out_dir / "test_image.png", dpi=120, bbox_inches="tight")
    figures.append((f"Test image 0 (true class {truth}, predicted {guess}) whose feature maps follow", "test_image.png"))
    side = data.shape[-1]
    for i, (name, maps) in enumerate(stage_outputs(model, images[:1]), start=1):
        fig = Figure(figsize=(12, 3.6 if len(maps) > 8 else 2.2), layout="constrained")
        _feature_grid(fig, name, maps, side)
        file = f"feature_maps_stage{i}.png"
        fig.savefig(out_dir / file, dpi=100)
        figures.append((f"Feature maps of test image 0 after {name} ({what})", file))

    # Confusion matrix on the whole test set, rows = true class, as fractions of the row.
    k = len(classes)
    counts = torch.bincount(labels * k + predicted, minlength=k * k).view(k, k).double()
    rates = counts / counts.sum(1, keepdim=True).clamp(min=1)
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    shown = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="fraction of the true class")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for r in range(k):
        for c in range(k):
            if counts[r, c]:
                ax.text(c, r, f"{int(counts[r, c])}", ha="center", va="center", fontsize=7,
                        color="white" if rates[r, c] > 0.5 else "black")
    accuracy = float((predicted == labels).double().mean())
    ax.set_title(f"Confusion matrix, {len(labels)} test images (accuracy {100 * accuracy:.1f}%)\n{what}", fontsize=10)
    fig.savefig(out_dir / "confusion_matrix.png", dpi=110)
    figures.append((f"Test-set confusion matrix ({what}); counts in cells, colour = share of the true class",
                    "confusion_matrix.png"))

    # Accuracy of each class, with the overall accuracy as a line.
    per_class = rates.diagonal().numpy()
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(range(k), 100 * per_class, color="tab:blue")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.axhline(100 * accuracy, color="tab:red", linestyle="--")
    ax.set_xticks(range(k), classes, rotation=30, ha="right")
    ax.set_ylim(0, 105)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Per-class test accuracy ({what}); dashed: overall {100 * accuracy:.1f}%", fontsize=10)
    fig.savefig(out_dir / "per_class_accuracy.png", dpi=110)
    figures.append((f"Per-class test accuracy ({what})", "per_class_accuracy.png"))
    return figures


report_text = sample_images = None  # the parts of the lab contract (labspec.registry.LabModule) this lab leaves out
