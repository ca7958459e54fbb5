"""Lab 4's Wasserstein GAN (hyperparameters: WGANConfig), with its quality measured as FID.

The lab's generator turns 100-d noise into a 1x28x28 image through four transposed convs
(BN + ReLU between, Tanh at the end; 830,785 parameters) and its critic is three convs with
BN and LeakyReLU (134,721 parameters). Its Lipschitz constraint is weight clipping, which
the WGAN-GP paper showed to under-use the critic and to train unstably (the students saw
late collapse on Fashion-MNIST). `faithful: true` is that lab as written; the corrected
default keeps the generator, normalises the critic per image instead of per batch and uses a
gradient penalty.

Read top to bottom: the two networks, the trainer's two steps, then sampling and figures.
"""
from __future__ import annotations

import pathlib
from typing import Any

import torch
from torch import nn

from trainables import generative
from trainables.generative import (
    GANTrainer, GenerativeData, gan_curves_figure, grid_figure, progress_figure, trial_dir_of,
)
from trainables.generative import load_generative_data as load_data  # noqa: F401  (for the driver)
from labspec.hparams import WGANConfig


# --------------------------------------------------------------------------- the networks
def _up(in_c: int, out_c: int, kernel: int, stride: int, last: bool = False) -> list[nn.Module]:
    conv = nn.ConvTranspose2d(in_c, out_c, kernel, stride)
    return [conv, nn.Tanh()] if last else [conv, nn.BatchNorm2d(out_c), nn.ReLU()]


class Generator(nn.Sequential):
    """noise (N, latent) -> 256x3x3 -> 128x6x6 -> 64x13x13 -> Cx28x28 in [-1, 1] (the lab's generator)."""

    def __init__(self, latent_dim: int = 100, channels: int = 1, width: int = 64) -> None:
        super().__init__(
            nn.Unflatten(1, (latent_dim, 1, 1)),
            *_up(latent_dim, 4 * width, 3, 2), *_up(4 * width, 2 * width, 4, 1), *_up(2 * width, width, 3, 2),
            *_up(width, channels, 4, 2, last=True),
        )


class Critic(nn.Sequential):
    """Cx28x28 -> 64x13x13 -> 128x5x5 -> one unbounded score (the lab's critic).

    norm="batch" is the lab's (BatchNorm after the first two convs). A gradient penalty is defined
    per sample, and BatchNorm makes each score depend on the rest of the batch, so the corrected
    critic uses "layer" (GroupNorm with one group: each image's feature map normalised on its own,
    the WGAN-GP paper's recommended stand-in) or "none".
    """

    def __init__(self, channels: int = 1, width: int = 64, norm: str = "batch") -> None:
        layers = {"batch": nn.BatchNorm2d, "layer": lambda c: nn.GroupNorm(1, c), "none": None}
        if norm not in layers:
            raise ValueError(f"critic norm: {norm!r} is not allowed; expected one of {sorted(layers)}")

        def down(in_c: int, out_c: int) -> list[nn.Module]:
            normalise = [layers[norm](out_c)] if layers[norm] else []
            return [nn.Conv2d(in_c, out_c, 4, 2), *normalise, nn.LeakyReLU(0.2)]

        super().__init__(*down(channels, width), *down(width, 2 * width), nn.Conv2d(2 * width, 1, 4, 2), nn.Flatten())


def build_networks(cfg: WGANConfig, channels: int) -> tuple[Generator, Critic]:
    return Generator(cfg.latent_dim, channels), Critic(channels, norm="batch" if cfg.faithful else cfg.critic_norm)


def uses_clipping(cfg: WGANConfig) -> bool:
    return cfg.faithful or cfg.critic == "clip"


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mean of (|grad critic(x_hat)| - 1)^2 at random points x_hat between real and fake images."""
    mix = torch.rand(len(real), 1, 1, 1, generator=generator, device=real.device)
    between = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


# --------------------------------------------------------------------------- the trainer
class Trainer(GANTrainer):
    """Critic: maximise E[D(real)] - E[D(fake)] (clipped weights, or + gp_weight * penalty); G: maximise E[D(fake)]."""

    cfg: WGANConfig

    def build_models(self) -> tuple[nn.Module, nn.Module]:
        return build_networks(self.cfg, self.channels)

    def generate(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.generator_net(noise)

    def d_step(self, real: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self.generator_net(self.noise(len(real)))
        score_real, score_fake = self.critic(real).mean(), self.critic(fake).mean()
        loss = score_fake - score_real
        if not uses_clipping(self.cfg):
            loss = loss + self.cfg.gp_weight * gradient_penalty(self.critic, real, fake, self.device_generator)
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optimizer.step()
        if uses_clipping(self.cfg):
            with torch.no_grad():
                for p in self.critic.parameters():
                    p.clamp_(-self.cfg.clip_value, self.cfg.clip_value)
        return {"d_loss": loss.detach(), "d_real": score_real.detach(), "d_fake": score_fake.detach()}

    def g_step(self, batch_size: int, labels: torch.Tensor) -> torch.Tensor:
        loss = -self.critic(self.generator_net(self.noise(batch_size))).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


# --------------------------------------------------------------------------- sampling and figures
def load_generator(checkpoint_dir: str | pathlib.Path) -> tuple[Generator, WGANConfig, dict[str, Any]]:
    return generative.load_generator(checkpoint_dir, WGANConfig, build_networks)


@torch.no_grad()
def sample_images(checkpoint_dir: str, n: int, *, digit: int | None = None, seed: int = 0) -> torch.Tensor:
    """n images (n, C, 28, 28) in [0, 1] from the checkpoint's generator (unconditional: `digit` is ignored)."""
    generator, cfg, _ = load_generator(checkpoint_dir)
    noise = torch.randn(n, cfg.latent_dim, generator=torch.Generator().manual_seed(seed))
    return generator(noise).add(1).div(2).clamp(0, 1)


def report_figures(checkpoint_dir: str, data: GenerativeData, out_dir: pathlib.Path) -> list[tuple[str, str]]:
    """Samples of the best checkpoint, samples over training, and the critic's curves."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _, cfg, saved = load_generator(checkpoint_dir)
    kind = ("faithful lab WGAN (weight clipping, BN critic)" if cfg.faithful
            else f"WGAN, critic={cfg.critic}, norm={cfg.critic_norm}")
    what = f"{kind} on {saved['data']['name']}, epoch {saved['epoch']}, FID {saved['metrics']['fid']:.2f}"
    figures = []
    grid_figure(sample_images(checkpoint_dir, 64, seed=cfg.seed), 8, f"64 samples from random normal noise ({what})",
                out_dir / "samples.png")
    figures.append((f"64 samples from random normal noise ({what})", "samples.png"))
    trial_dir = trial_dir_of(checkpoint_dir)
    if progress_figure(trial_dir, out_dir / "samples_over_training.png"):
        figures.append(("Sample grids over training (the same noise every epoch)", "samples_over_training.png"))
    if gan_curves_figure(trial_dir, out_dir / "gan_curves.png", f"Best trial: {kind}"):
        figures.append(("Critic and generator losses, and the critic's mean score on real and generated images, per epoch",
                        "gan_curves.png"))
    return figures


report_text = None  # the parts of the lab contract (labspec.registry.LabModule) this lab leaves out
