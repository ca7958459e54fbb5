"""Pieces every generative lab (ae, vae, wgan, cgan) shares: images as tensors, progress grids
written during training, the figures drawn from them, and the GAN trainer both GAN labs build on.

Images: the labs' models work on 28x28. MNIST / Fashion-MNIST stay as they are; CIFAR-10's
32x32 is resized to 28x28 (antialiased bilinear) once per trial. `channels="native"` keeps the
dataset's channels (1 or 3); `channels="lab"` feeds 3 channels as the lab did (a grey image
repeated three times).
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import re
import textwrap
import warnings
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables.classify import made_once
from trainables.data import ImageData, load_images
from trainables.loop import CHECKPOINT_FILE, Trainer, index_batches, load_checkpoint, make_optimizer
from labspec.plotting import epoch_axis, point_size
from trainables.quality import (
    ReferenceCNN, classifier_from_state, conditional_accuracy, features, fid, readable_share, reference_state,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIDE = 28
SAMPLES_FOLDER = "samples"
GRID_PATTERN = re.compile(r"epoch_(\d+)\.png$")


# --------------------------------------------------------------------------- images
def image_tensors(
    data: ImageData,
    split: str,
    *,
    channels: str,
    device: torch.device,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as float images (N, C, 28, 28) scaled into `value_range`, and its int64 labels.

    Made once per trial process and shared by its seeds' trainers (`made_once`); 'lab' channels
    of a 1-channel dataset are the one channel seen three times (a view), not three copies.
    """
    if channels not in ("native", "lab"):
        raise ValueError(f"channels: {channels!r} is not allowed; expected native or lab")
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    return made_once((x, y), ("generative", channels, str(device), tuple(value_range)),
                     lambda: _image_tensors(x, y, channels, device, value_range))


def _image_tensors(x: Any, y: Any, channels: str, device: torch.device,
                   value_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    # torch.tensor copies: arrays from Ray's object store are read-only views.
    images = torch.tensor(x, dtype=torch.float32, device=device).div_(255.0)
    if images.shape[-2:] != (SIDE, SIDE):
        images = F.interpolate(images, size=(SIDE, SIDE), mode="bilinear", antialias=True, align_corners=False)
    low, high = value_range
    if (low, high) != (0.0, 1.0):
        images = images.mul_(high - low).add_(low)
    images = images.contiguous()
    if channels == "lab" and images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)  # batches gathered from it (index_select) have their 3 channels
    return images, torch.tensor(y, dtype=torch.int64, device=device)


def image_channels(channels: str, dataset_shape: tuple[int, ...]) -> int:
    """Channels a model sees: 3 for 'lab', else the dataset's own."""
    return 3 if channels == "lab" else int(dataset_shape[0])


# --------------------------------------------------------------------------- data object
@dataclass
class GenerativeData:
    """A generative lab's data: the images plus the reference classifier (state dict) that judges them.

    Built once on the driver (which trains the classifier if it is not cached) and shared with
    trials through Ray's object store. The properties are what the loop and the CLI read.
    """

    images: ImageData
    reference: dict[str, Any]

    @property
    def name(self) -> str:
        return self.images.name

    @property
    def classes(self) -> list[str]:
        return self.images.classes

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.images.shape

    @property
    def split_sizes(self) -> dict[str, int]:
        return self.images.split_sizes

    def trial_split(self, config: dict[str, Any]) -> str:
        return self.images.trial_split(config)

    def checkpoint_info(self) -> dict[str, Any]:
        return {"name": self.name, "classes": self.classes, "shape": list(self.shape)}  # generated images carry no normalisation


def load_generative_data(name: str, data_dir: str | None = None, *, subset: int | None = None) -> GenerativeData:
    """The dataset and its reference classifier (trained once per dataset, then cached).

    The classifier always learns from the whole training split, so a `--subset` smoke run is
    judged by the same classifier (and the same cache entry) as a full search.
    """
    images = load_images(name, data_dir)
    reference = reference_state(images)
    if subset is not None:  # load_images(subset=N) keeps the first N of the same shuffled training order
        images = dataclasses.replace(images, x_train=images.x_train[:subset], y_train=images.y_train[:subset])
    return GenerativeData(images=images, reference=reference)


# --------------------------------------------------------------------------- progress grids
def progress_dir() -> pathlib.Path | None:
    """`samples/` (created) in the trial's own folder of the results, inside a Ray trial; else None.

    Not `tune.get_context().get_trial_dir()`: for a trial that starts a fresh actor Ray names the
    driver's staging folder (which the driver copies into the results), but for one that runs on a
    reused actor (`reuse_actors`, e.g. the third and fourth of four trials run two at a time) it
    names the trial's local working directory, which Ray copies nowhere unless `sync_artifacts` is
    on: lab 5's reproduce lost those trials' digit grids so. The trial's folder in the results
    (Ray's storage context, where the worker writes its checkpoints too) is the same for every trial.
    With a results root at a URI (s3://) that folder is not a local path: the grids then go to the
    trial's working directory (tests/test_progress_grids.py).
    """
    try:
        from ray import tune

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # outside a trial Ray warns and returns None
            storage = tune.get_context().get_storage()
    except Exception:
        return None
    if storage is None:
        return None
    from pyarrow.fs import LocalFileSystem

    local = isinstance(storage.storage_filesystem, LocalFileSystem)
    folder = pathlib.Path(storage.trial_fs_path if local else storage.trial_working_directory) / SAMPLES_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_grid(images01: torch.Tensor, path: str | pathlib.Path, nrow: int) -> None:
    """A grid of images in [0, 1] as one PNG, white lines between images."""
    from torchvision.utils import save_image

    save_image(images01.detach().float().clamp(0, 1).cpu(), str(path), nrow=nrow, padding=2, pad_value=1.0)


def draw_grid(ax, images01: torch.Tensor, nrow: int) -> None:
    """Images (N, C, H, W) in [0, 1] as one grid on a matplotlib axis, grey for one channel, colour for three."""
    from torchvision.utils import make_grid

    grid = make_grid(images01.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=1.0)
    grid = grid.permute(1, 2, 0).numpy()
    ax.imshow(grid if images01.shape[1] == 3 else grid[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def grid_figure(images01: torch.Tensor, nrow: int, title: str, out_png: str | pathlib.Path,
                column_labels: list[str] | None = None) -> None:
    """A grid of images drawn large enough to judge by eye, with a title (and a label over each column)."""
    from matplotlib.figure import Figure

    rows = math.ceil(len(images01) / nrow)
    width = max(6.0, 0.75 * nrow)
    fig = Figure(figsize=(width, 0.5 + width * rows / nrow), layout="constrained")
    ax = fig.subplots()
    draw_grid(ax, images01, nrow)
    if column_labels:
        side = images01.shape[-1] + 2
        size = 10 if max(map(len, column_labels)) <= 3 else 7  # digits, or class names such as "automobile"
        ax.set_xticks([side * (i + 0.5) for i in range(len(column_labels))], column_labels, fontsize=size)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
    ax.set_title(textwrap.fill(title, width=int(11 * width)), fontsize=9)
    fig.savefig(out_png, dpi=110)


def trial_dir_of(checkpoint_dir: str | pathlib.Path) -> pathlib.Path:
    """The Ray trial folder holding a checkpoint folder (or a checkpoint.pt)."""
    path = pathlib.Path(checkpoint_dir)
    if path.name == CHECKPOINT_FILE:
        path = path.parent
    return path.parent


def epoch_grids(trial_dir: str | pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """(epoch, PNG) of a trial's progress grids, in epoch order."""
    folder = pathlib.Path(trial_dir) / SAMPLES_FOLDER
    return sorted((int(m.group(1)), p) for p in folder.glob("epoch_*.png") if (m := GRID_PATTERN.search(p.name)))


def _grids_figure(panels: list[tuple[str, pathlib.Path]], out_png: str | pathlib.Path, title: str) -> None:
    """Grid PNGs side by side, three to a row (four as two by two), each under its own title."""
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    cols = 2 if len(panels) == 4 else min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    width = max(3.6 * cols, 6.0)  # inches; room for the title
    fig = Figure(figsize=(width, 3.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (caption, path) in zip(axes.flat, panels):
        ax.imshow(imread(path), interpolation="nearest")
        ax.set_title(caption, fontsize=11)
    fig.suptitle(textwrap.fill(title, width=int(8 * width)), fontsize=12)  # ~8 characters an inch
    fig.savefig(out_png, dpi=110)


def progress_figure(trial_dir: str | pathlib.Path, out_png: str | pathlib.Path, most: int = 6,
                    title: str = "Samples from the same fixed noise over training") -> bool:
    """Up to `most` of a trial's epoch grids (first, last and evenly between) side by side; False if none."""
    grids = epoch_grids(trial_dir)
    if not grids:
        return False
    if len(grids) > most:
        picks = sorted({round(i * (len(grids) - 1) / (most - 1)) for i in range(most)})
        grids = [grids[i] for i in picks]
    _grids_figure([(f"epoch {epoch}", path) for epoch, path in grids], out_png, title)
    return True


def trials_grids_figure(experiment_dir: str | pathlib.Path, out_png: str | pathlib.Path, title: str) -> bool:
    """The last progress grid of every trial of a search side by side (lab 5's 'one grid per epoch
    setting'); False unless two trials have grids.

    The report's other figures show the best trial only; this one is how a reader compares the
    settings by eye. Each trial's folder keeps its grids when --keep-checkpoints prunes its checkpoint.
    """
    panels = last_grids(experiment_dir)
    if len(panels) < 2:
        return False
    _grids_figure(panels, out_png, title)
    return True


def last_grids(experiment_dir: str | pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    """(title, PNG) of each trial's last progress grid, in the order of its settings, titled by what the
    trials differ in: 'epochs=10 (epoch 10)', or a variant's name ('faithful (epoch 5)') rather than the
    settings the variant stands for."""
    import json

    trials = []
    for trial_dir in sorted(pathlib.Path(experiment_dir).iterdir()):
        grids, params = epoch_grids(trial_dir), trial_dir / "params.json"
        if grids and params.is_file():
            config = json.loads(params.read_text())
            config.update(config.pop("case", None) or {})  # a sweep search's case (its variant and values) wins
            trials.append((config, grids[-1]))
    def values(key: str, among: list) -> set[str]:
        return {json.dumps(config.get(key), sort_keys=True) for config, _ in among}

    differ = [key for key in trials[0][0] if len(values(key, trials)) > 1]
    if "variant" in differ:  # a variant names its settings: keep only what varies within a variant
        variants = {config["variant"] for config, _ in trials}
        within = [key for key in differ if any(len(values(key, [t for t in trials if t[0]["variant"] == v])) > 1
                                               for v in variants)]
        differ = ["variant", *within]

    def label(config: dict[str, Any]) -> str:
        return ", ".join(str(config[key]) if key == "variant" else f"{key}={config.get(key)}" for key in differ)

    def order(trial: tuple[dict[str, Any], Any]) -> tuple:
        return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in (trial[0].get(k) for k in differ))

    return [(f"{label(config)} (epoch {epoch})", path) for config, (epoch, path) in sorted(trials, key=order)]


def trial_history(trial_dir: str | pathlib.Path) -> dict[str, list[float]]:
    """Per-epoch metrics of a trial from Ray's result.json (one JSON object per reported epoch)."""
    import json

    history: dict[str, list[float]] = {}
    path = pathlib.Path(trial_dir) / "result.json"
    if not path.is_file():
        return history
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                history.setdefault(key, []).append(float(value))
    return history


def gan_curves_figure(trial_dir: str | pathlib.Path, out_png: str | pathlib.Path, what: str) -> Figure | None:
    """D and G losses per epoch (left) and D's mean score on real and on fake images (right); None if
    the trial has no GAN history."""
    from matplotlib.figure import Figure

    history = trial_history(trial_dir)
    if "d_loss" not in history:
        return None
    epochs = history.get("training_iteration") or list(range(1, len(history["d_loss"]) + 1))
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    size = point_size(epochs, 3)
    left.plot(epochs, history["d_loss"], marker="o", markersize=size, label="D (critic) loss")
    left.plot(epochs, history["g_loss"], marker="o", markersize=size, label="G loss")
    left.set_title("Losses per epoch (mean over the epoch's steps)")
    right.plot(epochs, history["d_real"], marker="o", markersize=size, color="tab:green", label="real images")
    right.plot(epochs, history["d_fake"], marker="o", markersize=size, color="tab:red", label="generated images")
    right.set_title("D's mean score per epoch")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        epoch_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(what, fontsize=11)
    fig.savefig(out_png, dpi=110)
    return fig


# --------------------------------------------------------------------------- GAN training
class GANTrainer(Trainer):
    """The shared GAN epoch: `d_step` on every real batch, `g_step` after every n_critic of them.

    A lab supplies the two networks, the two steps and how to generate. Images live on the
    device in [-1, 1] (the generators end in Tanh). Every epoch, `evaluate` generates
    `quality_samples` images and measures them with the reference classifier against the
    validation split (FID, and what `extra_quality` adds), and a grid from fixed noise is
    saved into the trial's samples/ folder every `sample_every` epochs.
    """

    grid_rows: int = 8

    def __init__(self, cfg: Any, data: GenerativeData, device: torch.device) -> None:
        super().__init__(cfg, data, device)
        self.channels = image_channels(cfg.channels, data.shape)
        self.num_classes = data.images.num_classes
        self.x, self.y = image_tensors(data.images, "train", channels=cfg.channels, device=device, value_range=(-1.0, 1.0))
        self.generator_net, self.critic = self.build_models()
        self.generator_net.to(device)
        self.critic.to(device)
        self.model = nn.ModuleDict({"generator": self.generator_net, "critic": self.critic})
        self.optimizer = make_optimizer(cfg, self.generator_net.parameters())
        self.d_optimizer = make_optimizer(cfg, self.critic.parameters())
        self.epoch = 0
        self.reference = classifier_from_state(data.reference, device)
        val_images, _ = image_tensors(data.images, "val", channels=cfg.channels, device=device)
        self.val_features = features(self.reference, val_images)
        # Fixed noise (and labels) for the progress grids and the quality sample: epochs are comparable.
        noise = torch.Generator().manual_seed(cfg.seed + 12345)
        self.quality_noise = torch.randn(cfg.quality_samples, cfg.latent_dim, generator=noise).to(device)
        self.quality_labels = (torch.arange(cfg.quality_samples) % self.num_classes).to(device)
        grid = self.grid_rows * self.grid_columns()
        self.grid_noise = torch.randn(grid, cfg.latent_dim, generator=noise).to(device)
        self.grid_labels = (torch.arange(grid) % self.grid_columns() % self.num_classes).to(device)

    # ---- what a lab supplies
    @abstractmethod
    def build_models(self) -> tuple[nn.Module, nn.Module]:
        """(generator, critic/discriminator)."""

    @abstractmethod
    def d_step(self, real: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of D on a real batch; returns detached d_loss, d_real, d_fake (batch means)."""

    @abstractmethod
    def g_step(self, batch_size: int, labels: torch.Tensor) -> torch.Tensor:
        """One update of G; returns its detached loss."""

    @abstractmethod
    def generate(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] for this noise (and these labels, where the lab is conditional)."""

    def extra_quality(self, images01: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        return {}

    def grid_columns(self) -> int:
        return 8

    # ---- the shared epoch
    def noise(self, n: int) -> torch.Tensor:
        """(n, latent_dim) standard normal noise, drawn on the device."""
        return torch.randn(n, self.cfg.latent_dim, generator=self.device_generator, device=self.device)

    def random_labels(self, n: int) -> torch.Tensor:
        return torch.randint(0, self.num_classes, (n,), generator=self.device_generator, device=self.device)

    def train_epoch(self) -> dict[str, float]:
        self.generator_net.train()
        self.critic.train()
        sums = {k: torch.zeros((), device=self.device) for k in ("d_loss", "d_real", "d_fake", "g_loss")}
        d_steps = g_steps = 0
        for idx in index_batches(len(self.y), self.cfg.batch_size, self.device, self.generator):
            for key, value in self.d_step(self.x[idx], self.y[idx]).items():
                sums[key] += value
            d_steps += 1
            if d_steps % self.cfg.n_critic == 0:
                sums["g_loss"] += self.g_step(len(idx), self.random_labels(len(idx)))
                g_steps += 1
        self.epoch += 1
        metrics = {k: v.item() / d_steps for k, v in sums.items() if k != "g_loss"}
        metrics["g_loss"] = sums["g_loss"].item() / max(1, g_steps)
        metrics["samples"] = len(self.y)
        return metrics

    @torch.no_grad()
    def sample01(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.generator_net.eval()
        images = torch.cat([self.generate(n, l) for n, l in zip(noise.split(500), labels.split(500))])
        return images.add(1).div(2).clamp(0, 1)

    def evaluate(self) -> dict[str, float]:
        images = self.sample01(self.quality_noise, self.quality_labels)
        metrics = {"fid": fid(self.val_features, features(self.reference, images)),
                   "readable": readable_share(self.reference, images)}
        metrics.update(self.extra_quality(images, self.quality_labels))
        folder = progress_dir()
        if folder is not None and (self.epoch % self.cfg.sample_every == 0 or self.epoch == self.cfg.epochs):
            save_grid(self.sample01(self.grid_noise, self.grid_labels), folder / f"epoch_{self.epoch:03d}.png",
                      nrow=self.grid_columns())
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Both networks and optimizers, and the generators (`rng`, as `Trainer.state_dict` saves them):
        a resumed trial draws the batches, noise and fake labels the uninterrupted one would."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "d_optimizer": self.d_optimizer.state_dict(), "epoch": self.epoch, "rng": self.random_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.epoch = state["epoch"]
        self.load_random_state(state)  # absent before issue 35: the draws then restart from the seed


def conditional_quality(reference: ReferenceCNN, images01: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """cond_acc and cond_acc_0 .. cond_acc_9 as metrics."""
    overall, per_class = conditional_accuracy(reference, images01, labels)
    return {"cond_acc": overall, **{f"cond_acc_{c}": v for c, v in enumerate(per_class)}}


def load_generator(checkpoint_dir: str | pathlib.Path, config_cls: type, build_networks) -> tuple[nn.Module, Any, dict[str, Any]]:
    """A GAN lab's generator from its checkpoint, in eval mode on the CPU, with the config and the saved dict.

    `build_networks(cfg, channels)` is the lab's (generator, critic) builder; only the generator's
    weights are loaded.
    """
    from labspec.config import config_from_dict

    saved = load_checkpoint(checkpoint_dir)
    cfg = config_from_dict(config_cls, saved["config"])
    generator, _ = build_networks(cfg, image_channels(cfg.channels, tuple(saved["data"]["shape"])))
    state = {k.removeprefix("generator."): v for k, v in saved["state"]["model"].items() if k.startswith("generator.")}
    generator.load_state_dict(state)
    return generator.eval(), cfg, saved

