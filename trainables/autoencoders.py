"""Lab 4: a convolutional autoencoder (lab "ae") and a variational autoencoder (lab "vae").

Read top to bottom: the two networks, the losses, the trainer both labs share (the VAE adds a
KL term and a prior to sample from), then what a saved checkpoint can do afterwards: the
report's figures and `sample_images` for `tune-lab generate vae`.

Images are 28x28 in [0, 1] (CIFAR-10 is resized), with the dataset's own channels or, as the
lab fed them, 3 (`channels: lab`). `faithful: true` is the lab's network as written on that
3-channel input. What the corrected VAE changes, and why:
- the lab's loss is the mean squared error *per pixel* plus a KL term *summed* over 128 latent
  dimensions, so the KL outweighs the reconstruction by the number of pixels (2,352 on 3x28x28):
  the encoder is pushed to the prior and every image decodes to much the same blur. The
  corrected loss sums the reconstruction over the pixels of each image, like the KL, so both
  weigh one image each (the ELBO), with a Bernoulli (bce) likelihood of the [0, 1] pixels;
- Adam at lr 0.01 makes the lab's loss jump about; the default is 1e-3;
- a 16-d latent instead of 128: the decoder meets the prior in fewer dimensions, so samples
  from N(0, I) land where it has learnt to draw (the `latent_dim` search measures this);
- samples are drawn from a Gaussian mixture fitted to the training images' codes after each
  epoch (`prior: mixture`), not from N(0, I): the ELBO never makes the codes fill N(0, I), and
  its empty regions decode to blends of digits (see `fit_mixture`).
The autoencoder itself has no weakness to correct: `faithful` only fixes the 3-channel input
and its 64-d code.

Metrics per epoch: `train_loss` and `val_loss` (the training objective), `val_mse`
(reconstruction MSE per pixel, [0, 1] units, the same formula for ae and vae, reconstructed
from the mean code for the vae), and for the vae `val_kl` and `val_elbo` (nats per image,
Bernoulli likelihood whatever the training loss, so every trial is measured the same way) and
`val_fid`: the FID of `quality_samples` samples (from the prior in use) against the validation images, on
the features of the reference classifier (trainables/quality.py), which the vae's data carries
(trainables/vae.py loads it; the ae has no use for it), and `readable`: the share of those
samples the same classifier reads as one digit with at least 90% probability.
"""
from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.data import load_images as load_data  # noqa: F401  (the lab's data, for the driver)
from trainables.generative import (
    draw_grid, grid_figure, image_tensors, progress_dir, progress_figure, save_grid, trial_dir_of,
)
from trainables.hparams import AEConfig, VAEConfig
from trainables.loop import Trainer as LoopTrainer, index_batches, load_checkpoint, make_optimizer, make_schedule
from trainables.quality import classifier_from_state, features, fid, readable_share

EVAL_BATCH = 1000
LAB_HIDDEN = 128  # the lab's VAE: a 128-d hidden vector, and fc_mu / fc_logvar 128 -> 128
PROGRESS_IMAGES = 16  # validation images in each of the ae's progress grids: 2 rows of 8, each above its outputs
PROGRESS_SAMPLES = 64  # samples in each of the vae's progress grids (8 x 8)
EVAL_SEED = 1234  # the same validation noise every epoch, so val_elbo moves only with the model
PRIOR_FIT_CODES = 10_000  # training images whose codes the mixture prior is fitted to (~6 s for 20 components)


# --------------------------------------------------------------------------- the networks
class Autoencoder(nn.Module):
    """The lab's autoencoder: 28x28 -> 14x14 -> 7x7 -> a `code`-channel 1x1 code, and back.

    Encoder conv 3x3 s2 (16) -> ReLU -> conv 3x3 s2 (32) -> ReLU -> conv 7x7 (code); the
    decoder mirrors it with transposed convs and ends in a Sigmoid. 210,947 parameters with
    the lab's 3-channel input and 64-d code.
    """

    def __init__(self, channels: int, code: int = 64) -> None:
        super().__init__()
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
        """The (N, code) vector of each image."""
        return self.encoder(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class VAE(nn.Module):
    """The lab's VAE: conv encoder with BN to a `hidden` vector, fc_mu / fc_logvar, transposed-conv decoder.

    Encoder conv 3x3 s2 (16) -> BN -> ReLU -> conv 3x3 s2 (32) -> BN -> ReLU -> conv 7x7
    (hidden) -> BN -> ReLU; decoder: the latent as a 1x1 map -> transposed convs mirroring the
    encoder -> Sigmoid. The decoder's last layer gives logits (`decode_logits`) so that the
    Bernoulli loss is computed stably; `decode` is the network's Sigmoid output.
    """

    def __init__(self, channels: int, latent: int, hidden: int = LAB_HIDDEN) -> None:
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, hidden, 7), nn.BatchNorm2d(hidden), nn.ReLU(), nn.Flatten(),
        )
        self.fc_mu = nn.Linear(hidden, latent)
        self.fc_logvar = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (latent, 1, 1)),
            nn.ConvTranspose2d(latent, 32, 7), nn.BatchNorm2d(32), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.ConvTranspose2d(16, channels, 3, stride=2, padding=1, output_padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(x)
        return self.fc_mu(hidden), self.fc_logvar(hidden)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction from the mean code (what the report shows and val_mse measures)."""
        mu, _ = self.encode(x)
        return self.decode(mu)


def input_channels(cfg: AEConfig | VAEConfig) -> str:
    """The channel setting a config trains on: the faithful model always sees the lab's 3 channels."""
    return "lab" if cfg.faithful else cfg.channels


def build_network(cfg: AEConfig | VAEConfig, channels: int) -> nn.Module:
    """The network a config asks for, for images of `channels` channels."""
    if isinstance(cfg, VAEConfig):
        return VAE(channels, LAB_HIDDEN if cfg.faithful else cfg.latent_dim)
    return Autoencoder(channels, 64 if cfg.faithful else cfg.latent_dim)


# --------------------------------------------------------------------------- the losses
def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps; `generator` (on the CPU) fixes eps, e.g. for evaluation."""
    eps = torch.randn(mu.shape, generator=generator).to(mu.device) if generator is not None else torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_per_image(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each image, summed over latent dimensions (nats)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def bce_per_image(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) under independent Bernoulli pixels, summed over each image's pixels (nats)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def vae_objective(cfg: VAEConfig, x: torch.Tensor, logits: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
    """The training loss of one batch: the lab's (faithful) or the ELBO-consistent one."""
    if cfg.faithful:  # per-pixel mean squared error + per-image KL: the KL outweighs it
        return F.mse_loss(torch.sigmoid(logits), x) + kl.mean()
    if cfg.recon_loss == "bce":
        recon = bce_per_image(logits, x)
    else:
        recon = (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1)
    return (recon + cfg.kl_weight * kl).mean()


# --------------------------------------------------------------------------- the prior samples come from
def fit_mixture(codes: torch.Tensor, components: int, seed: int) -> dict[str, torch.Tensor]:
    """A full-covariance Gaussian mixture of the codes, as tensors a checkpoint can hold.

    Why not N(0, I): the ELBO only asks each code's posterior to stay near the prior on average,
    so the codes of real images fill N(0, I) unevenly, and draws from its empty regions decode to
    blends of digits. Fitting a density to where the codes actually are after training, and
    sampling that, is the "ex-post density estimation" of Ghosh et al. (2020, "From variational
    to deterministic autoencoders"). scikit-learn does the EM; the mixture is kept as its weights,
    means and the Cholesky factors of its covariances, so `draw_latents` needs only torch.
    """
    from sklearn.mixture import GaussianMixture

    x = codes.detach().cpu().double().numpy()
    gmm = GaussianMixture(min(components, len(x)), covariance_type="full", random_state=seed).fit(x)
    return {
        "weights": torch.tensor(gmm.weights_, dtype=torch.float32),
        "means": torch.tensor(gmm.means_, dtype=torch.float32),
        "scale_tril": torch.tensor(np.linalg.cholesky(gmm.covariances_), dtype=torch.float32),
    }


def draw_latents(mixture: dict[str, torch.Tensor] | None, latent: int, n: int, seed: int) -> torch.Tensor:
    """`n` latent codes from the mixture, or from N(0, I) when there is none; the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    if mixture is None:
        return torch.randn(n, latent, generator=generator)
    component = torch.multinomial(mixture["weights"], n, replacement=True, generator=generator)
    eps = torch.randn(n, latent, 1, generator=generator)
    return mixture["means"][component] + (mixture["scale_tril"][component] @ eps).squeeze(-1)


def uses_mixture(cfg: AEConfig | VAEConfig) -> bool:
    return isinstance(cfg, VAEConfig) and cfg.prior == "mixture" and not cfg.faithful


def prior_name(latent: int, mixture: dict[str, torch.Tensor] | None) -> str:
    """How a figure names where its samples came from."""
    if mixture is None:
        return f"z ~ N(0, I), {latent}-d"
    return f"z from a {len(mixture['weights'])}-component Gaussian mixture fitted to training codes, {latent}-d"


# --------------------------------------------------------------------------- the trainer
class Trainer(LoopTrainer):
    """One class for both labs: the config's type says whether it is the ae or the vae."""

    cfg: AEConfig | VAEConfig

    def __init__(self, cfg: AEConfig | VAEConfig, data: Any, device: torch.device) -> None:
        super().__init__(cfg, data, device)
        self.variational = isinstance(cfg, VAEConfig)
        images = getattr(data, "images", data)  # the vae's GenerativeData, or the ae's ImageData
        self.splits = {split: image_tensors(images, split, channels=input_channels(cfg), device=device)[0]
                       for split in ("train", "val", "test")}
        channels = self.splits["train"].shape[1]
        self.model = build_network(cfg, channels).to(device)
        self.optimizer = make_optimizer(cfg, self.model.parameters())
        self.scheduler = make_schedule(cfg, self.optimizer, -(-len(self.splits["train"]) // cfg.batch_size))
        self.epoch = 0
        self.mixture: dict[str, torch.Tensor] | None = None  # refitted after every epoch when uses_mixture(cfg)
        if uses_mixture(cfg):  # the training images the mixture is fitted to: a fixed random subset
            chosen = torch.randperm(len(self.splits["train"]), generator=torch.Generator().manual_seed(cfg.seed))
            self.prior_fit_images = chosen[:PRIOR_FIT_CODES].to(device)
        self.reference = None
        if self.variational and getattr(data, "reference", None) is not None:
            self.reference = classifier_from_state(data.reference, device)
            self.val_features = features(self.reference, self.splits["val"])

    def latents(self, n: int, seed: int) -> torch.Tensor:
        """Codes to decode, from the prior in use; the same seed every epoch, so epochs compare."""
        return draw_latents(self.mixture, self.model.latent, n, seed).to(self.device)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        if not self.variational:
            return F.mse_loss(self.model(x), x)  # the lab's MSELoss
        mu, logvar = self.model.encode(x)
        logits = self.model.decode_logits(reparameterise(mu, logvar))
        return vae_objective(self.cfg, x, logits, kl_per_image(mu, logvar))

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
        if uses_mixture(self.cfg):
            self.model.eval()
            codes = _codes(self.model, self.splits["train"][self.prior_fit_images])
            if torch.isfinite(codes).all():  # else the loss diverged, and run_trial stops the trial saying so
                self.mixture = fit_mixture(codes, self.cfg.prior_components, self.cfg.seed)
        if self.epoch % self.cfg.sample_every == 0 or self.epoch == self.cfg.epochs:
            self.save_progress()
        return {"train_loss": loss_sum.item() / len(x), "samples": len(x)}

    @torch.no_grad()
    def evaluate_split(self, split: str) -> dict[str, float]:
        """Objective, per-pixel reconstruction MSE and (vae) KL and ELBO per image on one split."""
        x_all = self.splits[split]
        self.model.eval()
        noise = torch.Generator().manual_seed(EVAL_SEED)
        sums = {"loss": 0.0, "mse": 0.0, "kl": 0.0, "elbo": 0.0}
        for idx in index_batches(len(x_all), EVAL_BATCH, self.device, None):
            x = x_all[idx]
            if not self.variational:
                mse = F.mse_loss(self.model(x), x)
                sums["loss"] += float(mse) * len(idx)
                sums["mse"] += float(mse) * len(idx)
                continue
            mu, logvar = self.model.encode(x)
            kl = kl_per_image(mu, logvar)
            logits = self.model.decode_logits(reparameterise(mu, logvar, noise))
            sums["loss"] += float(vae_objective(self.cfg, x, logits, kl)) * len(idx)
            sums["mse"] += float(F.mse_loss(self.model.decode(mu), x)) * len(idx)
            sums["kl"] += float(kl.sum())
            sums["elbo"] -= float((bce_per_image(logits, x) + kl).sum())
        return {k: v / len(x_all) for k, v in sums.items()}

    def evaluate(self) -> dict[str, float]:
        val, test = self.evaluate_split("val"), self.evaluate_split("test")
        metrics = {"val_loss": val["loss"], "val_mse": val["mse"], "test_mse": test["mse"]}
        if self.variational:
            metrics.update(val_kl=val["kl"], val_elbo=val["elbo"], test_elbo=test["elbo"])
        if self.reference is not None:
            with torch.no_grad():
                noise = self.latents(self.cfg.quality_samples, self.cfg.seed + 1)
                samples = torch.cat([self.model.decode(z) for z in noise.split(EVAL_BATCH)])
            metrics["val_fid"] = fid(self.val_features, features(self.reference, samples))
            metrics["readable"] = readable_share(self.reference, samples)
        return metrics

    @torch.no_grad()
    def save_progress(self) -> None:
        """This epoch's grid of the fixed inputs' reconstructions (ae) or the fixed noise's samples (vae)."""
        folder = progress_dir()
        if folder is None:  # not inside a Ray trial
            return
        self.model.eval()
        if self.variational:
            grid, nrow = self.model.decode(self.latents(PROGRESS_SAMPLES, self.cfg.seed)), 8
        else:
            shown = self.splits["val"][:PROGRESS_IMAGES]
            inputs, outputs = shown.split(8), self.model(shown).split(8)
            grid, nrow = torch.cat([t for pair in zip(inputs, outputs) for t in pair]), 8
        save_grid(grid.cpu(), pathlib.Path(folder) / f"epoch_{self.epoch:03d}.png", nrow)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "epoch": self.epoch, "mixture": self.mixture}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.epoch = int(state.get("epoch", 0))
        self.mixture = state.get("mixture")


# --------------------------------------------------------------------------- after training
def load_checkpoint_model(checkpoint_dir: str) -> tuple[nn.Module, AEConfig | VAEConfig, dict[str, Any]]:
    """The network saved by `run_trial` in `checkpoint_dir` (or a checkpoint.pt path), in eval mode, on the CPU."""
    from trainables.config import config_from_dict

    saved = load_checkpoint(checkpoint_dir)
    cfg = config_from_dict(VAEConfig if saved["lab"] == "vae" else AEConfig, saved["config"])
    state = saved["state"]["model"]
    model = build_network(cfg, state["encoder.0.weight"].shape[1])  # the input channels it was trained on
    model.load_state_dict(state)
    return model.eval(), cfg, saved


def sample_images(checkpoint_dir: str, n: int, *, digit: int | None = None, seed: int = 0) -> torch.Tensor:
    """`n` images (n, C, 28, 28) in [0, 1] decoded by a saved VAE from its prior (the mixture it saved, or N(0, I)).

    The VAE is unconditional: it cannot be asked for a digit. An autoencoder has no prior to
    sample from (its codes fill an unknown region of a 64-d space), so it cannot generate.
    """
    if digit is not None:
        raise ValueError("the vae is unconditional: it cannot draw a chosen digit")
    model, _, saved = load_checkpoint_model(checkpoint_dir)
    if not isinstance(model, VAE):
        raise ValueError(f"lab {saved['lab']!r} has no prior to sample from; only the vae generates")
    return _decode_prior(model, saved["state"].get("mixture"), n, seed)


@torch.no_grad()
def _decode_prior(model: VAE, mixture: dict[str, torch.Tensor] | None, n: int, seed: int) -> torch.Tensor:
    return model.decode(draw_latents(mixture, model.latent, n, seed))


@torch.no_grad()
def _codes(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The encoder's code of each image: the AE's code vector, the VAE's posterior mean."""
    parts = []
    for i in range(0, len(images), EVAL_BATCH):
        batch = images[i : i + EVAL_BATCH]
        parts.append(model.encode(batch)[0] if isinstance(model, VAE) else model.encode(batch))
    return torch.cat(parts)


def latent_figure(codes: torch.Tensor, labels: np.ndarray, classes: list[str], title: str, path: pathlib.Path) -> None:
    """The codes in 2-D, coloured by class: PCA (linear; distances kept) beside t-SNE (neighbourhoods kept)."""
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = codes.numpy().astype(np.float64)
    pca = PCA(n_components=2).fit(x)
    projections = [
        (f"PCA ({100 * pca.explained_variance_ratio_.sum():.0f}% of the variance)", pca.transform(x)),
        ("t-SNE (perplexity 30)", TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                                       random_state=0).fit_transform(x)),
    ]
    fig = Figure(figsize=(13, 5.6), layout="constrained")
    axes = fig.subplots(1, 2)
    colours = [f"C{k}" for k in range(10)]
    for ax, (name, xy) in zip(axes, projections):
        for k, label in enumerate(classes):
            chosen = labels == k
            ax.scatter(xy[chosen, 0], xy[chosen, 1], s=5, alpha=0.7, color=colours[k % 10], label=label)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), title="class")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110)


def report_figures(checkpoint_dir: str, data: Any, out_dir: pathlib.Path) -> list[tuple[str, str]]:
    """The lab's figures for a finished trial, written as PNGs into `out_dir`.

    Reconstructions of validation images (inputs above outputs), for the vae 64 samples from
    N(0, I), the codes of 2,000 validation images in 2-D coloured by class, and the progress
    grids saved over training. Returns (caption, file name) pairs.
    """
    from matplotlib.figure import Figure

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, cfg, saved = load_checkpoint_model(checkpoint_dir)
    data = getattr(data, "images", data)
    images, labels = image_tensors(data, "val", channels=input_channels(cfg), device=torch.device("cpu"))
    lab = saved["lab"]
    trained = f"{lab}{' (faithful)' if cfg.faithful else ''} on {data.name}"
    what = f"{trained}, epoch {saved['epoch']}"
    figures: list[tuple[str, str]] = []

    # Reconstructions: 4 pairs of rows, validation inputs above their outputs.
    shown, per_row = images[:48], 12
    with torch.no_grad():
        outputs = model(shown)
    mse = float(F.mse_loss(outputs, shown))
    rows = []
    for start in range(0, len(shown), per_row):
        rows += [shown[start : start + per_row], outputs[start : start + per_row]]
    fig = Figure(figsize=(8, 0.6 + 7.4 * len(rows) / per_row), layout="constrained")
    ax = fig.subplots()
    draw_grid(ax, torch.cat(rows), per_row)
    side = shown.shape[-1] + 2
    ax.set_yticks([side * (i + 0.5) for i in range(len(rows))], ["input", "output"] * (len(rows) // 2), fontsize=8)
    ax.set_title(f"Validation reconstructions, inputs above outputs ({what}); MSE of these {len(shown)}: {mse:.4f}",
                 fontsize=9)
    fig.savefig(out_dir / "reconstructions.png", dpi=110)
    figures.append((f"Reconstructions of validation images, each input above its output ({what})", "reconstructions.png"))

    if isinstance(model, VAE):
        mixture = saved["state"].get("mixture")  # the checkpoint is loaded once, above
        source = prior_name(model.latent, mixture)
        grid_figure(_decode_prior(model, mixture, 64, seed=0), 8, f"64 samples decoded from {source}\n({what})",
                    out_dir / "samples.png")
        figures.append((f"Samples decoded from {source} ({what})", "samples.png"))

    n = min(2000, len(images))
    latent_figure(_codes(model, images[:n]), labels[:n].numpy(), list(data.classes),
                  f"{'Posterior means' if isinstance(model, VAE) else 'Codes'} of {n} validation images "
                  f"({codes_dim(model)}-d) in 2-D, coloured by class ({what})", out_dir / "latent_space.png")
    figures.append((f"The {'VAE posterior means' if isinstance(model, VAE) else 'autoencoder codes'} of {n} "
                    f"validation images projected to 2-D by PCA and t-SNE, coloured by class ({what})", "latent_space.png"))

    kind = ("Samples from the same seed" if isinstance(model, VAE)
            else "The same inputs (rows 1, 3) and their reconstructions (rows 2, 4)")
    if progress_figure(trial_dir_of(checkpoint_dir), out_dir / "progress.png", title=f"{kind} over training ({trained})"):
        figures.append((f"Over training: {kind.lower()[0] + kind[1:]}, every {cfg.sample_every} epochs (best trial)",
                        "progress.png"))
    return figures


def codes_dim(model: nn.Module) -> int:
    return model.latent if isinstance(model, VAE) else model.encoder[-1].out_channels


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())



report_text = None  # the part of the lab contract (trainables.registry.LabModule) this lab leaves out
