"""Lab "vae": the variational autoencoder, each piece a subclass of the autoencoder's (trainables/autoencoders.py).

The network adds a posterior; the trainer a KL term, a prior to sample from, and measures the
samples (val_fid, readable) with the reference classifier of trainables/quality.py, which
`load_data` trains once per dataset on the driver, caches and ships to the trials. `faithful:
true` is the lab's VAE as written; the README says what the corrected one changes, and why.
val_elbo / test_elbo use a Bernoulli likelihood whatever the training loss: every trial is measured alike.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables import autoencoders
from trainables.generative import GenerativeData, grid_figure, load_generative_data as load_data  # noqa: F401
from labspec.hparams import VAEConfig
from trainables.quality import classifier_from_state, features, fid, readable_share

LAB_HIDDEN = 128  # the lab's VAE: a 128-d hidden vector, and fc_mu / fc_logvar 128 -> 128
EVAL_SEED = 1234  # the same validation noise every epoch, so val_elbo moves only with the model
PRIOR_FIT_CODES = 10_000  # training images whose codes the mixture prior is fitted to (~6 s for 20 components)
report_text = None  # the part of the lab contract (labspec.registry.LabModule) this lab leaves out


class VAE(autoencoders.Autoencoder):
    """The lab's VAE: conv encoder with BN to a `hidden` vector, fc_mu / fc_logvar, transposed-conv decoder.

    Encoder conv 3x3 s2 (16) -> BN -> ReLU -> conv 3x3 s2 (32) -> BN -> ReLU -> conv 7x7 (hidden)
    -> BN -> ReLU; the decoder mirrors it, from the latent as a 1x1 map, and gives logits
    (`decode_logits`) so that the Bernoulli loss is computed stably. Its code (`encode`: what
    `forward` reconstructs from and the report projects) is the posterior mean.
    """

    def __init__(self, channels: int, latent: int, hidden: int = LAB_HIDDEN) -> None:
        nn.Module.__init__(self)  # not the autoencoder's layers: these, in the order checkpoints list them
        self.latent = latent
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, hidden, 7), nn.BatchNorm2d(hidden), nn.ReLU(), nn.Flatten(),
        )
        self.fc_mu, self.fc_logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (latent, 1, 1)),
            nn.ConvTranspose2d(latent, 32, 7), nn.BatchNorm2d(32), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.ConvTranspose2d(16, channels, 3, stride=2, padding=1, output_padding=1),
        )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of q(z|x)."""
        hidden = self.encoder(x)
        return self.fc_mu(hidden), self.fc_logvar(hidden)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_mu(self.encoder(x))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int, seed: int, mixture: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """`n` images decoded from codes of the mixture (of N(0, I) when there is none), the same for the same seed."""
        z = draw_latents(mixture, self.latent, n, seed).to(self.fc_mu.weight.device)
        return torch.cat([self.decode(batch) for batch in z.split(autoencoders.EVAL_BATCH)])


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
    recon = (bce_per_image(logits, x) if cfg.recon_loss == "bce"
             else (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1))  # mse, summed over each image's pixels
    return (recon + cfg.kl_weight * kl).mean()


# --------------------------------------------------------------------------- the prior samples come from
def fit_mixture(codes: torch.Tensor, components: int, seed: int) -> dict[str, torch.Tensor]:
    """A full-covariance Gaussian mixture of the codes, as tensors a checkpoint can hold.

    Why not N(0, I): the ELBO only asks each code's posterior to stay near the prior on average,
    so the codes of real images fill N(0, I) unevenly, and draws from its empty regions decode to
    blends of digits. Sampling a density fitted to where the codes are is the "ex-post density
    estimation" of Ghosh et al. (2020, "From variational to deterministic autoencoders"). Kept as
    weights, means and Cholesky factors of the covariances, so `draw_latents` needs only torch.
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


def uses_mixture(cfg: VAEConfig) -> bool:
    return cfg.prior == "mixture" and not cfg.faithful


# --------------------------------------------------------------------------- the trainer
class Trainer(autoencoders.Trainer):
    """The autoencoder's epoch with the VAE's loss; its samples come from a prior and are measured every epoch."""

    cfg: VAEConfig

    def __init__(self, cfg: VAEConfig, data: GenerativeData, device: torch.device) -> None:
        super().__init__(cfg, data.images, device)
        self.mixture: dict[str, torch.Tensor] | None = None  # refitted after every epoch when uses_mixture(cfg)
        if uses_mixture(cfg):  # the training images the mixture is fitted to: a fixed random subset
            chosen = torch.randperm(len(self.splits["train"]), generator=torch.Generator().manual_seed(cfg.seed))
            self.prior_fit_images = chosen[:PRIOR_FIT_CODES].to(device)
        self.reference = classifier_from_state(data.reference, device)
        self.val_features = features(self.reference, self.splits["val"])

    @staticmethod
    def network(cfg: VAEConfig, channels: int) -> VAE:
        return VAE(channels, LAB_HIDDEN if cfg.faithful else cfg.latent_dim)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.model.posterior(x)
        logits = self.model.decode_logits(reparameterise(mu, logvar))
        return vae_objective(self.cfg, x, logits, kl_per_image(mu, logvar))

    def end_epoch(self) -> None:
        """Refits the mixture prior to the codes the epoch's model gives, so the epoch's samples come from it."""
        if not uses_mixture(self.cfg):
            return
        self.model.eval()
        fitted = self.model.codes(self.splits["train"][self.prior_fit_images])
        if torch.isfinite(fitted).all():  # else the loss diverged, and run_trial stops the trial saying so
            self.mixture = fit_mixture(fitted, self.cfg.prior_components, self.cfg.seed)

    def evaluate_split(self, split: str) -> dict[str, float]:
        self.eval_noise = torch.Generator().manual_seed(EVAL_SEED)  # what `batch_sums` draws z with
        return super().evaluate_split(split)

    def batch_sums(self, x: torch.Tensor) -> dict[str, float]:
        """The objective, the MSE from the mean code, and the KL and ELBO of each image, summed over the batch."""
        mu, logvar = self.model.posterior(x)
        kl = kl_per_image(mu, logvar)
        logits = self.model.decode_logits(reparameterise(mu, logvar, self.eval_noise))
        return {"loss": float(vae_objective(self.cfg, x, logits, kl)) * len(x),
                "mse": float(F.mse_loss(self.model.decode(mu), x)) * len(x),
                "kl": float(kl.sum()), "elbo": -float((bce_per_image(logits, x) + kl).sum())}

    def metrics(self, val: dict[str, float], test: dict[str, float]) -> dict[str, float]:
        return {**super().metrics(val, test), "val_kl": val["kl"], "val_elbo": val["elbo"], "test_elbo": test["elbo"]}

    def evaluate(self) -> dict[str, float]:
        metrics = super().evaluate()  # first: it puts the model in eval mode
        samples = self.model.sample(self.cfg.quality_samples, self.cfg.seed + 1, self.mixture)  # the same every epoch
        return {**metrics, "val_fid": fid(self.val_features, features(self.reference, samples)),
                "readable": readable_share(self.reference, samples)}

    def progress_grid(self) -> torch.Tensor:  # 8 x 8 samples from the same seed every epoch
        return self.model.sample(64, self.cfg.seed, self.mixture)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "mixture": self.mixture}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.mixture = state.get("mixture")


# --------------------------------------------------------------------------- after training
class Report(autoencoders.Report):
    """The autoencoder's figures, with samples from the saved prior after the reconstructions."""

    codes_title, codes_caption = "Posterior means", "VAE posterior means"
    progress_kind = "Samples from the same seed"

    def figures(self) -> list[tuple[str, str]]:
        return [self.reconstructions(), self.samples(), self.latent_space(), *self.progress()]

    def samples(self) -> tuple[str, str]:
        mixture, latent = self.saved["state"].get("mixture"), self.model.latent
        source = (f"z ~ N(0, I), {latent}-d" if mixture is None else
                  f"z from a {len(mixture['weights'])}-component Gaussian mixture fitted to training codes, {latent}-d")
        grid_figure(self.model.sample(64, 0, mixture), 8, f"64 samples decoded from {source}\n({self.what})",
                    self.out_dir / "samples.png")
        return f"Samples decoded from {source} ({self.what})", "samples.png"


def report_figures(checkpoint_dir: str, data: GenerativeData, out_dir) -> list[tuple[str, str]]:
    return Report(checkpoint_dir, data.images, out_dir).figures()


def sample_images(checkpoint_dir: str, n: int, *, digit: int | None = None, seed: int = 0) -> torch.Tensor:
    """`n` images (n, C, 28, 28) in [0, 1] decoded by a saved VAE from its prior (the mixture it saved, or N(0, I))."""
    if digit is not None:
        raise ValueError("the vae is unconditional: it cannot draw a chosen digit")
    model, _, saved = autoencoders.load_model(checkpoint_dir)
    return model.sample(n, seed, saved["state"].get("mixture"))
