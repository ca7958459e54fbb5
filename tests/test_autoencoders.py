"""Lab 4 (ae, vae): the lab's networks, the VAE's loss terms, and tiny real searches with their figures."""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image
import torch.nn.functional as F

from tests.test_quality import TINY_RECIPE
from trainables import autoencoders, quality, vae
from trainables.autoencoders import Autoencoder, input_channels, load_model
from trainables.data import load_images
from labspec.hparams import AEConfig, VAEConfig
from trainables.vae import VAE, bce_per_image, draw_latents, fit_mixture, kl_per_image, uses_mixture, vae_objective
from tune_lab.cli import main


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_labs_autoencoder_has_its_210947_parameters_and_shapes():
    model = Autoencoder(3)
    assert parameter_count(model) == 210_947  # labs.md, with the lab's 3-channel input
    x = torch.rand(5, 3, 28, 28)
    assert model(x).shape == x.shape
    assert model.encode(x).shape == (5, 64)  # the 64-d code of the latent-space figure
    out = Autoencoder(1, code=8)(torch.rand(5, 1, 28, 28))
    assert out.shape == (5, 1, 28, 28) and out.min() >= 0 and out.max() <= 1


def test_ae_model_search_compares_what_it_says_the_input_channels():
    """`ae --search model` varies channels (lab / native), and channels=lab is the lab's network as written."""
    from reports.table import setting_label
    from tune_lab.spaces import load_search

    search = load_search("model", "ae")
    assert list(search.params) == ["channels"] and search.params["channels"].args == ["lab", "native"]
    assert "3-channel" in search.description and "own channels" in search.description
    lab = {**search.fixed, "channels": "lab"}
    assert setting_label({"setting": {"channels": "lab"}, "trial_id": "t"}) == "channels=lab"
    ours, faithful = AEConfig(**lab), AEConfig(**{**search.fixed, "faithful": True})
    assert input_channels(ours) == input_channels(faithful) == "lab"
    a, b = autoencoders.Trainer.network(ours, 3), autoencoders.Trainer.network(faithful, 3)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()] and parameter_count(a) == 210_947


def test_the_labs_vae_parameters_and_shapes():
    # labs.md gives 392,323; the layout it describes (BN encoder to a 128-d hidden vector,
    # fc_mu / fc_logvar 128 -> 128, mirrored transposed-conv decoder) has 445,187 on 3x28x28.
    assert parameter_count(VAE(3, 128)) == 445_187
    model = VAE(1, 16).eval()
    x = torch.rand(6, 1, 28, 28)
    mu, logvar = model.posterior(x)
    assert mu.shape == logvar.shape == (6, 16) and torch.equal(model.encode(x), mu)  # its code: the posterior mean
    assert model.decode(mu).shape == x.shape and torch.equal(model(x), model.decode(mu))
    assert torch.allclose(model.decode(mu), torch.sigmoid(model.decode_logits(mu)))


def test_faithful_means_the_labs_networks_whatever_the_settings():
    assert parameter_count(autoencoders.Trainer.network(AEConfig(faithful=True, latent_dim=8), 3)) == 210_947
    assert vae.Trainer.network(VAEConfig(faithful=True, latent_dim=4), 3).latent == 128
    assert uses_mixture(VAEConfig()) and not uses_mixture(VAEConfig(faithful=True))  # the lab samples N(0, I)
    assert not uses_mixture(VAEConfig(prior="normal"))
    assert vae.Trainer.network(VAEConfig(latent_dim=4), 1).latent == 4


def test_kl_and_bce_on_known_inputs():
    zeros = torch.zeros(3, 8)
    assert torch.allclose(kl_per_image(zeros, zeros), torch.zeros(3))  # q = prior
    # KL(N(1, 1) || N(0, 1)) = 1/2 per dimension
    assert torch.allclose(kl_per_image(torch.ones(2, 8), zeros[:2]), torch.full((2,), 4.0))
    # logits 0 = p 0.5 on every pixel: log 2 nats per pixel, whatever the target
    assert torch.allclose(bce_per_image(torch.zeros(2, 1, 28, 28), torch.rand(2, 1, 28, 28)),
                          torch.full((2,), 784 * math.log(2)))


def test_the_labs_vae_loss_lets_the_kl_outweigh_the_pixels_and_the_corrected_one_does_not():
    x = torch.rand(4, 3, 28, 28)
    logits, kl = torch.zeros_like(x), torch.full((4,), 10.0)
    faithful = vae_objective(VAEConfig(faithful=True), x, logits, kl)
    assert torch.allclose(faithful, F.mse_loss(torch.full_like(x, 0.5), x) + 10.0)  # per-pixel mean + KL
    corrected = vae_objective(VAEConfig(), x, logits, kl)
    assert torch.allclose(corrected, torch.tensor(3 * 784 * math.log(2) + 10.0))
    assert torch.allclose(vae_objective(VAEConfig(kl_weight=0.5), x, logits, kl), corrected - 5.0)


def test_the_mixture_prior_draws_where_the_codes_are_not_between_them():
    # Codes in two tight clusters, 30% at -5 and 70% at +5 on the first axis: N(0, I) draws
    # between them (where a VAE's decoder has seen no code); the fitted mixture does not.
    make = torch.Generator().manual_seed(0)
    centres = torch.zeros(1000, 4)
    centres[:300, 0], centres[300:, 0] = -5.0, 5.0
    codes = centres + 0.1 * torch.randn(1000, 4, generator=make)
    mixture = fit_mixture(codes, components=2, seed=0)
    assert sorted(mixture["weights"].tolist()) == pytest.approx([0.3, 0.7], abs=1e-3)
    drawn = draw_latents(mixture, 4, 2000, seed=1)
    distance = torch.cdist(drawn, torch.tensor([[-5.0, 0, 0, 0], [5.0, 0, 0, 0]])).min(1).values
    assert drawn.shape == (2000, 4) and distance.max() < 1.0
    assert (drawn[:, 0] < 0).float().mean().item() == pytest.approx(0.3, abs=0.04)
    assert torch.equal(draw_latents(mixture, 4, 2000, seed=1), drawn)  # the same seed, the same codes
    assert not torch.equal(draw_latents(mixture, 4, 2000, seed=2), drawn)
    assert torch.equal(draw_latents(None, 4, 5, seed=1), torch.randn(5, 4, generator=torch.Generator().manual_seed(1)))
    assert (torch.cdist(torch.randn(2000, 4), torch.tensor([[-5.0, 0, 0, 0], [5.0, 0, 0, 0]])).min(1).values > 1).all()


def test_both_trainers_learn_the_tiny_task_without_ray(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_LAB_CACHE", str(tmp_path / "cache"))  # the vae's reference classifier, tiny
    monkeypatch.setattr(quality, "DEFAULT_RECIPE", TINY_RECIPE)
    for lab, cfg in ((autoencoders, AEConfig(epochs=2, batch_size=32, latent_dim=16, lr=0.005)),
                     (vae, VAEConfig(epochs=2, batch_size=32, latent_dim=8, lr=0.003, quality_samples=100))):
        data = lab.load_data("mnist", tiny_mnist, subset=320)
        trainer = lab.Trainer(cfg, data, torch.device("cpu"))
        before = trainer.evaluate()
        for _ in range(2):
            train = trainer.train_epoch()
        after = trainer.evaluate()
        assert train["samples"] == 320 and trainer.epoch == 2
        assert after["val_mse"] < before["val_mse"]
        if isinstance(cfg, VAEConfig):  # the default prior: a 20-component mixture of the 8-d codes
            assert trainer.mixture["scale_tril"].shape == (20, 8, 8)
            assert trainer.mixture["weights"].sum().item() == pytest.approx(1.0)
            assert after["val_elbo"] > before["val_elbo"] and after["val_kl"] > 0
            assert after["val_loss"] == pytest.approx(-after["val_elbo"])  # kl_weight 1, bce: the ELBO itself
            assert after["val_fid"] > 0 and 0 <= after["readable"] <= 1


def test_faithful_trainer_feeds_three_channels(tiny_mnist):
    data = load_images("mnist", tiny_mnist, subset=64)
    trainer = autoencoders.Trainer(AEConfig(faithful=True, epochs=1), data, torch.device("cpu"))
    assert trainer.splits["train"].shape[1:] == (3, 28, 28)
    assert parameter_count(trainer.model) == 210_947


TINY_AE_SEARCH = """
description: the faithful and the corrected autoencoder, one epoch
lab: ae
metric: val_mse
mode: min
fixed: {epochs: 1, batch_size: 64, lr: 0.005}
params:
  faithful: {grid: [true, false]}
search: grid
scheduler: fifo
"""


def _looks_like_a_png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 2000, path


def test_tiny_ae_search_reports_mse_and_draws_its_figures(ray_session, tiny_mnist, tmp_path):
    space = tmp_path / "ae.yaml"
    space.write_text(textwrap.dedent(TINY_AE_SEARCH))
    results = tmp_path / "results"
    code = main(["ae", "--search", str(space), "--data-dir", str(tiny_mnist), "--storage", str(results),
                 "--experiment", "tiny-ae"])
    assert code == 0
    summary = json.loads((results / "tiny-ae" / "summary.json").read_text())
    assert len(summary["trials"]) == 2
    for trial in summary["trials"]:
        assert trial["status"] == "completed"
        assert 0 < trial["best"]["val_mse"] < 0.2 and trial["best"]["test_mse"] > 0
        # each trial's progress grid of its last epoch: 2 rows of 8 inputs, each above its 8 reconstructions
        grid = Path(trial["path"]) / "samples" / "epoch_001.png"  # in the trial's folder, its checkpoint pruned or not
        with Image.open(grid) as image:
            assert image.size == (8 * 30 + 2, 4 * 30 + 2)
    report = results / "tiny-ae" / "report"
    for name in ("reconstructions.png", "latent_space.png", "progress.png"):
        _looks_like_a_png(report / name)
        assert name in (report / "report.md").read_text()
    assert not (report / "samples.png").exists()  # an autoencoder has no prior to sample from
    assert "val_mse" in (report / "report.md").read_text()


def test_tiny_vae_search_reports_elbo_and_draws_samples(tiny_vae_search, tiny_mnist):
    folder = tiny_vae_search / "tiny-vae"
    summary = json.loads((folder / "summary.json").read_text())
    (trial,) = summary["trials"]
    assert trial["status"] == "completed" and trial["epochs_run"] == 2
    for metric in ("val_mse", "val_kl", "val_elbo", "val_fid", "readable", "test_elbo"):
        assert len(trial["history"][metric]) == 2, metric
    assert trial["best"]["val_elbo"] < 0 and trial["best"]["val_kl"] > 0 and trial["best"]["val_fid"] > 0
    assert all(0.0 <= share <= 1.0 for share in trial["history"]["readable"])
    report = folder / "report"
    for name in ("reconstructions.png", "samples.png", "latent_space.png", "progress.png"):
        _looks_like_a_png(report / name)
    model, cfg, saved = load_model(trial["checkpoint"])
    assert isinstance(model, VAE) and cfg.latent_dim == 8 and saved["lab"] == "vae"
    assert saved["state"]["mixture"]["means"].shape == (20, 8)  # what `tune-lab generate vae` draws from
