"""Lab "ae": the lab's convolutional autoencoder, its trainer and report, which trainables/vae.py extends.

Images are 28x28 in [0, 1] (CIFAR-10 resized), with the dataset's own channels or, as the lab fed them,
3 (`channels: lab`); `faithful: true` is the lab's network as written, on that input with a 64-d code.
val_mse / test_mse (what the ae's searches select on): the reconstruction's MSE per pixel, in [0, 1] units.
"""
from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labspec.config import config_from_dict
from trainables.data import ImageData, load_images as load_data  # noqa: F401  (the lab's data, for the driver)
from trainables.generative import draw_grid, image_tensors, progress_dir, progress_figure, save_grid, trial_dir_of
from labspec.hparams import AEConfig
from trainables.loop import Trainer as LoopTrainer, index_batches, load_checkpoint, make_optimizer, make_schedule
from labspec.registry import get_lab

EVAL_BATCH = 1000
PROGRESS_IMAGES = 16  # validation images in each progress grid: 2 rows of 8, each above its outputs
report_text = sample_images = None  # the parts of the lab contract (labspec.registry.LabModule) this lab leaves out


class Autoencoder(nn.Module):
    """The lab's autoencoder: 28x28 -> 14x14 -> 7x7 -> a `code`-channel 1x1 code, and back.

    Encoder conv 3x3 s2 (16) -> ReLU -> conv 3x3 s2 (32) -> ReLU -> conv 7x7 (code); the
    decoder mirrors it with transposed convs and ends in a Sigmoid. 210,947 parameters with
    the lab's 3-channel input and 64-d code.
    """

    def __init__(self, channels: int, code: int = 64) -> None:
        super().__init__()
        self.latent = code
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, code, 7),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(code, 32, 7), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(16, channels, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, latent) code of each image: what the latent-space figure projects."""
        return self.encoder(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def codes(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.encode(batch) for batch in images.split(EVAL_BATCH)])


def input_channels(cfg: AEConfig) -> str:
    """The channel setting a config trains on: the faithful model always sees the lab's 3 channels."""
    return "lab" if cfg.faithful else cfg.channels


# --------------------------------------------------------------------------- the trainer
class Trainer(LoopTrainer):
    """The epoch, the evaluation loop and the saved state; a lab built on this one overrides the hooks:
    `network`, `loss`, `end_epoch`, `batch_sums`, `metrics` and `progress_grid`."""

    cfg: AEConfig

    def __init__(self, cfg: AEConfig, data: ImageData, device: torch.device) -> None:
        super().__init__(cfg, data, device)
        self.splits = {split: image_tensors(data, split, channels=input_channels(cfg), device=device)[0]
                       for split in ("train", "val", "test")}
        self.model = self.network(cfg, self.splits["train"].shape[1]).to(device)
        self.optimizer = make_optimizer(cfg, self.model.parameters())
        self.scheduler = make_schedule(cfg, self.optimizer, -(-len(self.splits["train"]) // cfg.batch_size))
        self.epoch = 0

    @staticmethod
    def network(cfg: AEConfig, channels: int) -> Autoencoder:
        return Autoencoder(channels, 64 if cfg.faithful else cfg.latent_dim)

    def loss(self, x: torch.Tensor) -> torch.Tensor:  # the training objective of one batch
        return F.mse_loss(self.model(x), x)  # the lab's MSELoss

    def train_epoch(self) -> dict[str, float]:
        x = self.splits["train"]
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)  # one sync per epoch, not one per batch
        for idx in index_batches(len(x), self.cfg.batch_size, self.device, self.generator):
            loss = self.loss(x[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            loss_sum += loss.detach() * len(idx)
        self.epoch += 1
        self.end_epoch()
        if self.epoch % self.cfg.sample_every == 0 or self.epoch == self.cfg.epochs:
            self.save_progress()
        return {"train_loss": loss_sum.item() / len(x), "samples": len(x)}

    def end_epoch(self) -> None:
        """Runs after an epoch's last step, before its progress grid is drawn; nothing to do here."""

    @torch.no_grad()
    def evaluate_split(self, split: str) -> dict[str, float]:
        x_all = self.splits[split]
        self.model.eval()
        sums: dict[str, float] = {}
        for idx in index_batches(len(x_all), EVAL_BATCH, self.device, None):
            for key, value in self.batch_sums(x_all[idx]).items():
                sums[key] = sums.get(key, 0.0) + value
        return {k: v / len(x_all) for k, v in sums.items()}

    def batch_sums(self, x: torch.Tensor) -> dict[str, float]:
        """Each measure summed over the images of one evaluation batch: the objective and the MSE."""
        mse = float(F.mse_loss(self.model(x), x)) * len(x)
        return {"loss": mse, "mse": mse}

    def evaluate(self) -> dict[str, float]:
        return self.metrics(self.evaluate_split("val"), self.evaluate_split("test"))

    def metrics(self, val: dict[str, float], test: dict[str, float]) -> dict[str, float]:  # from the splits' means
        return {"val_loss": val["loss"], "val_mse": val["mse"], "test_mse": test["mse"]}

    @torch.no_grad()
    def save_progress(self) -> None:
        """This epoch's `progress_grid` as a PNG in the trial's samples folder (nothing outside a Ray trial)."""
        folder = progress_dir()
        if folder is None:
            return
        self.model.eval()
        save_grid(self.progress_grid().cpu(), pathlib.Path(folder) / f"epoch_{self.epoch:03d}.png", 8)

    def progress_grid(self) -> torch.Tensor:
        """The same validation images every epoch, each row of 8 above their reconstructions."""
        shown = self.splits["val"][:PROGRESS_IMAGES]
        return torch.cat([t for pair in zip(shown.split(8), self.model(shown).split(8)) for t in pair])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.epoch = int(state.get("epoch", 0))


# --------------------------------------------------------------------------- after training
def load_model(checkpoint_dir: str) -> tuple[Autoencoder, Any, dict[str, Any]]:
    """The network saved in `checkpoint_dir` (or a checkpoint.pt), in eval mode on the CPU, its config and the saved
    dict; the lab the checkpoint names (this one, or one built on it) says which config and network."""
    saved = load_checkpoint(checkpoint_dir)
    lab = get_lab(saved["lab"])
    cfg = config_from_dict(lab.config, saved["config"])
    model = lab.load().Trainer.network(cfg, saved["state"]["model"]["encoder.0.weight"].shape[1])  # its channels
    model.load_state_dict(saved["state"]["model"])
    return model.eval(), cfg, saved


class Report:
    """The figures of a finished trial, drawn from its checkpoint and validation images into `out_dir`."""

    codes_title, codes_caption = "Codes", "autoencoder codes"
    progress_kind = "The same inputs (rows 1, 3) and their reconstructions (rows 2, 4)"  # what progress_grid draws

    def __init__(self, checkpoint_dir: str, data: ImageData, out_dir: pathlib.Path) -> None:
        self.checkpoint_dir, self.out_dir = checkpoint_dir, pathlib.Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.model, self.cfg, self.saved = load_model(checkpoint_dir)
        self.images, self.labels = image_tensors(data, "val", channels=input_channels(self.cfg), device=torch.device("cpu"))
        self.classes = list(data.classes)
        self.trained = f"{self.saved['lab']}{' (faithful)' if self.cfg.faithful else ''} on {data.name}"
        self.what = f"{self.trained}, epoch {self.saved['epoch']}"

    def figures(self) -> list[tuple[str, str]]:  # (caption, file name) of each, in the report's order
        return [self.reconstructions(), self.latent_space(), *self.progress()]

    def reconstructions(self) -> tuple[str, str]:
        from matplotlib.figure import Figure

        shown, per_row = self.images[:48], 12
        with torch.no_grad():
            outputs = self.model(shown)
        mse = float(F.mse_loss(outputs, shown))
        rows = [t for pair in zip(shown.split(per_row), outputs.split(per_row)) for t in pair]
        fig = Figure(figsize=(8, 0.6 + 7.4 * len(rows) / per_row), layout="constrained")
        ax = fig.subplots()
        draw_grid(ax, torch.cat(rows), per_row)
        side = shown.shape[-1] + 2
        ax.set_yticks([side * (i + 0.5) for i in range(len(rows))], ["input", "output"] * (len(rows) // 2), fontsize=8)
        ax.set_title(f"Validation reconstructions, inputs above outputs ({self.what}); MSE of these {len(shown)}: "
                     f"{mse:.4f}", fontsize=9)
        fig.savefig(self.out_dir / "reconstructions.png", dpi=110)
        return f"Reconstructions of validation images, each input above its output ({self.what})", "reconstructions.png"

    def latent_space(self) -> tuple[str, str]:
        """Validation images' codes in 2-D by class: PCA (linear; distances kept) beside t-SNE (neighbourhoods kept)."""
        from matplotlib.figure import Figure
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        n = min(2000, len(self.images))
        x, labels = self.model.codes(self.images[:n]).numpy().astype(np.float64), self.labels[:n].numpy()
        pca = PCA(n_components=2).fit(x)
        projections = [
            (f"PCA ({100 * pca.explained_variance_ratio_.sum():.0f}% of the variance)", pca.transform(x)),
            ("t-SNE (perplexity 30)", TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                                           random_state=0).fit_transform(x)),
        ]
        fig = Figure(figsize=(13, 5.6), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, (name, xy) in zip(axes, projections):
            for k, label in enumerate(self.classes):
                chosen = labels == k
                ax.scatter(xy[chosen, 0], xy[chosen, 1], s=5, alpha=0.7, color=f"C{k % 10}", label=label)
            ax.set_title(name, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[1].legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), title="class")
        fig.suptitle(f"{self.codes_title} of {n} validation images ({self.model.latent}-d) in 2-D, coloured by class "
                     f"({self.what})", fontsize=11)
        fig.savefig(self.out_dir / "latent_space.png", dpi=110)
        return (f"The {self.codes_caption} of {n} validation images projected to 2-D by PCA and t-SNE, coloured by "
                f"class ({self.what})", "latent_space.png")

    def progress(self) -> list[tuple[str, str]]:  # none if the trial saved no grids
        kind = self.progress_kind
        if not progress_figure(trial_dir_of(self.checkpoint_dir), self.out_dir / "progress.png",
                               title=f"{kind} over training ({self.trained})"):
            return []
        return [(f"Over training: {kind.lower()[0] + kind[1:]}, every {self.cfg.sample_every} epochs (best trial)",
                 "progress.png")]


def report_figures(checkpoint_dir: str, data: ImageData, out_dir: pathlib.Path) -> list[tuple[str, str]]:
    return Report(checkpoint_dir, data, out_dir).figures()
