"""Labs 4 (wgan) and 5 (cgan): network shapes and sizes, the training steps, tiny real searches,
report figures and sampling from the best checkpoint."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import run_search
from tests.test_quality import TINY_RECIPE
from trainables import cgan, quality, wgan
from trainables.generative import GenerativeData, load_generative_data
from labspec.hparams import CGANConfig, WGANConfig
from tune_lab.cli import main


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNE_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(quality, "DEFAULT_RECIPE", TINY_RECIPE)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_wgan_networks_are_the_labs_sizes_and_shapes():
    generator, critic = wgan.Generator(), wgan.Critic()
    assert count(generator) == 830_785 and count(critic) == 134_721  # labs.md
    images = generator(torch.randn(5, 100))
    assert images.shape == (5, 1, 28, 28) and images.abs().max() <= 1.0
    assert critic(images).shape == (5, 1)
    # The corrected critic has the same convs without BatchNorm; 3 'lab' channels work too.
    plain = wgan.Critic(norm="none")
    assert count(plain) == 134_721 - 2 * (64 + 128)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert wgan.Critic(3)(wgan.Generator(16, 3)(torch.randn(2, 16))).shape == (2, 1)


def test_layer_norm_critic_scores_each_image_on_its_own():
    """What the gradient penalty needs: an image's score must not depend on its batch (BatchNorm's does)."""
    torch.manual_seed(0)
    images, others = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    layer, batch = wgan.Critic(norm="layer").train(), wgan.Critic(norm="batch").train()
    assert count(layer) == 134_721  # GroupNorm's affine weights stand where BatchNorm's were
    assert torch.allclose(layer(images)[:2], layer(torch.cat([images[:2], others]))[:2], atol=1e-6)
    assert not torch.allclose(batch(images)[:2], batch(torch.cat([images[:2], others]))[:2], atol=1e-3)
    with pytest.raises(ValueError, match="critic norm: 'instance' is not allowed"):
        wgan.Critic(norm="instance")


def test_cgan_networks_shapes():
    labels = torch.tensor([0, 3, 9])
    lab_g, lab_d = cgan.LabGenerator(), cgan.LabDiscriminator()
    images = lab_g(torch.randn(3, 100), labels)
    assert images.shape == (3, 1, 28, 28)
    scores = lab_d(images)
    assert scores.shape == (3, 10) and scores.min() >= 0 and scores.max() <= 1
    assert lab_g.fc.out_features == 56 * 56  # the lab's 1x56x56 map
    g, d = cgan.ConditionalGenerator(64, 3, width=8), cgan.ProjectionDiscriminator(3, width=8)
    images = g(torch.randn(3, 64), labels)
    assert images.shape == (3, 3, 28, 28) and d(images, labels).shape == (3,)
    # The projection discriminator's score depends on the label it is given.
    assert not torch.allclose(d(images, labels), d(images, (labels + 1) % 10))


def test_gradient_penalty_is_zero_for_a_unit_slope_critic():
    slope = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        slope[1].weight.copy_(torch.tensor([[0.6, 0.8, 0.0, 0.0]]))  # |grad| = 1 everywhere
    real, fake = torch.randn(8, 1, 2, 2), torch.randn(8, 1, 2, 2)
    assert wgan.gradient_penalty(slope, real, fake, torch.Generator().manual_seed(0)).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        slope[1].weight.mul_(3.0)  # |grad| = 3: penalty (3 - 1)^2
    assert wgan.gradient_penalty(slope, real, fake, torch.Generator().manual_seed(0)).item() == pytest.approx(4.0)


@pytest.mark.parametrize("cfg", [WGANConfig(faithful=True, quality_samples=50), WGANConfig(n_critic=2, quality_samples=50)])
def test_wgan_epoch_reports_losses_scores_and_fid_and_clips(tiny_mnist, cfg):
    data = load_generative_data("mnist", tiny_mnist, subset=256)
    trainer = wgan.Trainer(cfg, data, torch.device("cpu"))
    metrics = {**trainer.train_epoch(), **trainer.evaluate()}
    assert {"d_loss", "g_loss", "d_real", "d_fake", "fid", "readable", "samples"} <= set(metrics)
    assert metrics["samples"] == 256 and metrics["fid"] > 0 and 0.0 <= metrics["readable"] <= 1.0
    biggest = max(p.abs().max().item() for p in trainer.critic.parameters())
    if cfg.faithful:
        assert biggest <= cfg.clip_value + 1e-9
    else:
        assert biggest > cfg.clip_value  # the gradient penalty leaves the weights free


CGAN_SEARCH = """
description: faithful vs corrected cGAN on tiny MNIST-format data, one epoch
lab: cgan
metric: cond_acc
mode: max
fixed: {epochs: 1, batch_size: 64, quality_samples: 100, width: 8, latent_dim: 16, lr: 0.001}
params:
  faithful: {grid: [true, false]}
search: grid
scheduler: fifo
"""

WGAN_SEARCH = """
description: one epoch of WGAN-GP on tiny MNIST-format data
lab: wgan
metric: fid
mode: min
fixed: {epochs: 2, batch_size: 128, quality_samples: 100, n_critic: 2, latent_dim: 16}
params:
  critic: {grid: [gp]}
search: grid
scheduler: fifo
"""


def _search(lab: str, text: str, tiny_mnist, tmp_path) -> dict:
    return run_search(lab, text, tiny_mnist, tmp_path / "results", lab, "--subset", "256")


def _check_pngs(report, names):
    for name in names:
        png = (report / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 1000, name
        assert name in (report / "report.md").read_text()


def test_tiny_cgan_search_measures_conditional_accuracy_and_samples_digits(ray_session, tiny_mnist, tmp_path):
    summary = _search("cgan", CGAN_SEARCH, tiny_mnist, tmp_path)
    assert len(summary["trials"]) == 2
    for trial in summary["trials"]:
        assert trial["status"] == "completed"
        for metric in ("d_loss", "g_loss", "d_real", "d_fake", "fid", "readable", "cond_acc"):
            assert trial["history"][metric][0] is not None, metric
        assert 0.0 <= trial["best"]["cond_acc"] <= 1.0
    best = summary["best"]
    report = tmp_path / "results" / "cgan" / "report"
    _check_pngs(report, ["digit_grid.png", "cond_acc_per_digit.png", "samples_over_training.png", "gan_curves.png"])
    checkpoint = best["checkpoint"]
    saved = torch.load(f"{checkpoint}/checkpoint.pt", weights_only=True)
    assert {f"cond_acc_{d}" for d in range(10)} <= set(saved["metrics"])
    sevens = cgan.sample_images(checkpoint, 4, digit=7, seed=1)
    assert sevens.shape == (4, 1, 28, 28) and 0.0 <= float(sevens.min()) and float(sevens.max()) <= 1.0
    assert torch.equal(sevens, cgan.sample_images(checkpoint, 4, digit=7, seed=1))  # seeded
    assert cgan.sample_images(checkpoint, 3, digit=None, seed=0).shape == (30, 1, 28, 28)
    with pytest.raises(ValueError, match="digit: 10 is not allowed; expected 0-9"):
        cgan.sample_images(checkpoint, 4, digit=10, seed=0)

    # tune-lab generate on the newest cgan search of this results root.
    root = str(tmp_path / "results")
    assert main(["generate", "cgan", "--digit", "7", "--n", "16", "--out", str(tmp_path / "sevens.png"), "--storage", root]) == 0
    assert (tmp_path / "sevens.png").read_bytes().startswith(b"\x89PNG")
    assert main(["generate", "cgan", "--n", "3", "--out", str(tmp_path / "all.png"), "--storage", root]) == 0
    assert main(["generate", "cgan", "--digit", "12", "--n", "4", "--out", str(tmp_path / "x.png"), "--storage", root]) == 2


def test_tiny_wgan_search_reports_fid_every_epoch_and_samples(ray_session, tiny_mnist, tmp_path):
    summary = _search("wgan", WGAN_SEARCH, tiny_mnist, tmp_path)
    (trial,) = summary["trials"]
    assert trial["status"] == "completed" and len(trial["history"]["fid"]) == 2
    assert all(v is not None and v > 0 for v in trial["history"]["fid"])
    report = tmp_path / "results" / "wgan" / "report"
    _check_pngs(report, ["samples.png", "samples_over_training.png", "gan_curves.png"])
    samples = wgan.sample_images(summary["best"]["checkpoint"], 6, digit=None, seed=0)
    assert samples.shape == (6, 1, 28, 28)
    out = tmp_path / "samples.png"
    assert main(["generate", "wgan", "--n", "9", "--out", str(out), "--storage", str(tmp_path / "results")]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert main(["generate", "wgan", "--digit", "3", "--out", str(out), "--storage", str(tmp_path / "results")]) == 2


def test_generative_data_is_what_the_loop_needs(tiny_mnist):
    data = load_generative_data("mnist", tiny_mnist)
    assert isinstance(data, GenerativeData)

    assert data.checkpoint_info() == {"name": "mnist", "classes": data.classes, "shape": [1, 28, 28]}
    assert CGANConfig().width == 16 and CGANConfig().aux_weight == 10.0


def test_a_one_epoch_gan_trial_draws_its_epoch_as_one_tick(tmp_path):
    """Lab 5's quick cGAN section trains one epoch: its D/G figure spread 0.95-1.05 in fractions of an epoch."""
    import json

    from trainables.generative import gan_curves_figure

    (tmp_path / "result.json").write_text(json.dumps(
        {"training_iteration": 1, "d_loss": 0.52, "g_loss": 1.31, "d_real": 0.61, "d_fake": 0.38}) + "\n")
    figure = gan_curves_figure(tmp_path, tmp_path / "gan_curves.png", "one epoch")
    assert [list(ax.get_xticks()) for ax in figure.axes] == [[1.0], [1.0]]
    assert {line.get_markersize() for ax in figure.axes for line in ax.get_lines()} == {8}  # visible dots
    assert (tmp_path / "gan_curves.png").read_bytes().startswith(b"\x89PNG")
    assert gan_curves_figure(tmp_path / "nothing here", tmp_path / "none.png", "no trial") is None
