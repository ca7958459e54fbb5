"""Measured image quality: a reference classifier tune-lab trains itself, FID on its features,
and the conditional accuracy of a class-conditional generator.

Inception weights cannot be downloaded on the machines tune-lab targets, so "FID" here is the
Fréchet distance between Gaussians fitted to the **128-d penultimate activations (fc1 after its
ReLU) of `ReferenceCNN`**, a small CNN trained once per dataset on that dataset's own training
split (28x28, native channels, pixels in [0, 1]). The numbers are comparable between runs that
use the same dataset and recipe (the cache key), not with published Inception FIDs.

The classifier is trained on the driver, in a lab's `load_data`, so concurrent trials never race
to train it; trials get its `state_dict` inside the data object through Ray's object store.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.data import ImageData
from labspec.files import written_whole

CACHE_ENV = "TUNE_LAB_CACHE"
FEATURE_BATCH = 1000


@dataclass(frozen=True)
class ReferenceRecipe:
    """How the reference classifier is trained; every field is part of the cache key.

    Bump `version` whenever the network or the training code changes meaning.
    """

    version: int = 1
    width: int = 32  # channels of the first conv; the second has twice as many
    features: int = 128  # size of fc1, the layer FID reads
    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


# Tests swap this for a tiny recipe (a few channels, one epoch) to stay fast.
DEFAULT_RECIPE = ReferenceRecipe()


class ReferenceCNN(nn.Module):
    """conv3x3(w) -> ReLU -> pool -> conv3x3(2w) -> ReLU -> pool -> fc1 (128) -> ReLU -> fc2 (classes).

    `features(x)` is fc1's output after its ReLU: the layer FID is computed on.
    """

    def __init__(self, channels: int, num_classes: int, width: int = 32, features: int = 128) -> None:
        super().__init__()
        self.channels, self.num_classes = channels, num_classes
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, features), nn.ReLU(),
        )
        self.head = nn.Linear(features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# --------------------------------------------------------------------------- training and cache
def reference_dir() -> Path:
    """$TUNE_LAB_CACHE/reference, else ~/.cache/tune-lab/reference."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base) / "reference" if base else Path("~/.cache/tune-lab/reference")).expanduser().resolve()


def _fingerprint(data: ImageData) -> str:
    """A short hash of the training split: a subset or another copy of a dataset gets its own classifier."""
    digest = hashlib.sha1()
    for array in (data.x_train, data.y_train, data.x_val, data.y_val):
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:12]


def _tensors28(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, C, H, W) -> float [0, 1] at 28x28 (antialiased resize for CIFAR's 32x32)."""
    images = torch.tensor(x, dtype=torch.float32).div_(255.0)
    if images.shape[-2:] != (28, 28):
        images = F.interpolate(images, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    return images, torch.tensor(y, dtype=torch.int64)


@torch.no_grad()
def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float(predict(model, images).eq(labels).double().mean())


def train_reference(data: ImageData, recipe: ReferenceRecipe) -> tuple[nn.Module, float]:
    """Train the reference classifier on `data`'s training split; returns it and its val accuracy.

    One thread: on a shared 2-core machine two threads that wait on each other were 16x slower
    per step (17 ms vs 281 ms) than one; on an idle machine one thread costs ~1.5x at most.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_reference(data, recipe)
    finally:
        torch.set_num_threads(threads)


def _train_reference(data: ImageData, recipe: ReferenceRecipe) -> tuple[nn.Module, float]:
    torch.manual_seed(recipe.seed)
    x, y = _tensors28(data.x_train, data.y_train)
    x_val, y_val = _tensors28(data.x_val, data.y_val)
    model = ReferenceCNN(x.shape[1], data.num_classes, recipe.width, recipe.features)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    generator = torch.Generator().manual_seed(recipe.seed)
    for epoch in range(1, recipe.epochs + 1):
        start = time.perf_counter()
        model.train()
        batches = torch.randperm(len(y), generator=generator).split(recipe.batch_size)
        quarter = max(1, len(batches) // 4)
        for step, idx in enumerate(batches, start=1):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % quarter == 0 and step < len(batches):
                print(f"tune-lab: reference classifier for {data.name}: epoch {epoch}/{recipe.epochs}, "
                      f"{100 * step // len(batches)}% (loss {loss.item():.3f})", file=sys.stderr, flush=True)
        accuracy = _accuracy(model.eval(), x_val, y_val)
        print(f"tune-lab: reference classifier for {data.name}: epoch {epoch}/{recipe.epochs}, "
              f"val accuracy {100 * accuracy:.2f}% ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return model.eval(), accuracy


def reference_state(data: ImageData, recipe: ReferenceRecipe | None = None) -> dict[str, Any]:
    """The reference classifier of `data` as a picklable dict, trained now unless cached.

    The dict ({"recipe", "channels", "num_classes", "state", "val_acc", "dataset"}) is what
    labs put into their data object; `classifier_from_state` turns it back into the network.
    """
    recipe = recipe or DEFAULT_RECIPE
    folder = reference_dir()
    key = f"{data.name}-v{recipe.version}-{hashlib.sha1(repr(asdict(recipe)).encode()).hexdigest()[:8]}-{_fingerprint(data)}"
    path = folder / f"{key}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    print(f"tune-lab: training the reference classifier for {data.name} once (for FID and conditional accuracy; "
          f"cached in {path})", file=sys.stderr, flush=True)
    model, accuracy = train_reference(data, recipe)
    saved = {
        "dataset": data.name, "recipe": asdict(recipe), "channels": model.channels, "num_classes": model.num_classes,
        "val_acc": accuracy, "state": model.state_dict(),
    }
    with written_whole(path) as partial:  # concurrent searches: the last complete file wins
        torch.save(saved, partial)
    return saved


def classifier_from_state(saved: dict[str, Any], device: torch.device | str = "cpu") -> ReferenceCNN:
    recipe = saved["recipe"]
    model = ReferenceCNN(saved["channels"], saved["num_classes"], recipe["width"], recipe["features"])
    model.load_state_dict(saved["state"])
    return model.to(device).eval()


def reference_classifier(data: ImageData, recipe: ReferenceRecipe | None = None) -> ReferenceCNN:
    """The cached reference classifier of `data` (trained now if there is none), in eval mode on the CPU."""
    return classifier_from_state(reference_state(data, recipe))


# --------------------------------------------------------------------------- the metrics
def _as_classifier_input(classifier: ReferenceCNN, images01: torch.Tensor) -> torch.Tensor:
    """3 'lab' channels of a grey dataset are averaged back to the one channel the classifier knows."""
    if images01.shape[1] != classifier.channels:
        if classifier.channels == 1:
            return images01.mean(dim=1, keepdim=True)
        raise ValueError(f"images have {images01.shape[1]} channels; the reference classifier reads {classifier.channels}")
    return images01


@torch.no_grad()
def features(classifier: ReferenceCNN, images01: torch.Tensor) -> torch.Tensor:
    """(N, 128) fc1-after-ReLU activations of the reference classifier for images in [0, 1]."""
    classifier.eval()
    images01 = _as_classifier_input(classifier, images01)
    return torch.cat([classifier.features(b) for b in images01.split(FEATURE_BATCH)]).double()


@torch.no_grad()
def predict(classifier: nn.Module, images01: torch.Tensor) -> torch.Tensor:
    classifier.eval()
    if isinstance(classifier, ReferenceCNN):
        images01 = _as_classifier_input(classifier, images01)
    return torch.cat([classifier(b).argmax(1) for b in images01.split(FEATURE_BATCH)])


READABLE_CONFIDENCE = 0.9


@torch.no_grad()
def readable_share(classifier: ReferenceCNN, images01: torch.Tensor, confidence: float = READABLE_CONFIDENCE) -> float:
    """Share of images the reference classifier reads as one class with at least `confidence` probability.

    "Are the samples recognisable?" was judged by eye in the labs. A blur between two digits, or
    strokes that are no digit, spread the classifier's probability over several classes; a clear
    digit does not. Real MNIST test digits score 0.96 on its reference classifier (the pixel
    average of two digits 0.38, uniform noise 0.06), so the figure reads against that. It says
    nothing about variety (one perfect digit repeated scores 1): FID and, for the cgan, the
    conditional accuracy cover that.
    """
    classifier.eval()
    images01 = _as_classifier_input(classifier, images01)
    top = torch.cat([classifier(b).softmax(1).amax(1) for b in images01.split(FEATURE_BATCH)])
    return float(top.ge(confidence).double().mean())


def fid(real_features: torch.Tensor, fake_features: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples).

    |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), where tr((S1 S2)^1/2) is computed as
    the sum of square roots of the eigenvalues of the symmetric S1^1/2 S2 S1^1/2 (same spectrum,
    and eigh on a symmetric matrix is stable where a general matrix square root is not).
    """
    a, b = real_features.double(), fake_features.double()
    if not (a.isfinite().all() and b.isfinite().all()):  # a diverged generator: NaN, which run_trial reports
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(0.0, float(distance))


def conditional_accuracy(
    classifier: nn.Module, images01: torch.Tensor, requested: torch.Tensor
) -> tuple[float, list[float]]:
    """Share of images the classifier reads as the class they were generated for: overall and per class.

    A class that was never requested gets NaN in the per-class list.
    """
    hits = predict(classifier, images01).cpu().eq(requested.cpu())
    num_classes = getattr(classifier, "num_classes", int(requested.max()) + 1)
    per_class = []
    for c in range(num_classes):
        chosen = requested.cpu() == c
        per_class.append(float(hits[chosen].double().mean()) if chosen.any() else float("nan"))
    return float(hits.double().mean()), per_class
