"""The light form of a lab (`tune_lab.lab`, trainables/light.py): a model and its epoch, and tune-lab does the rest."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tune_lab
from trainables import loop
from trainables.data import load_images
from labspec.registry import LABS, get_lab

CPU = torch.device("cpu")


@dataclass
class TinyMLP:
    lr: float = 1e-3
    hidden: int = 16
    dropout: float = 0.2
    epochs: int = 3
    batch_size: int = 64
    seed: int = 0


if "tiny_mlp" not in LABS:
    @tune_lab.lab("tiny_mlp", config=TinyMLP, datasets=("mnist",))
    def tiny_mlp(cfg, data, device):
        """A one-hidden-layer MLP with dropout (its masks test the random streams)"""
        model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                              nn.Linear(cfg.hidden, 10)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

        def epoch():
            model.train()
            for x, y in data.batches("train", cfg.batch_size):
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            return {"train_loss": loss.item(), **data.evaluate(model, "val"), **data.evaluate(model, "test")}

        return model, optimizer, epoch


@pytest.fixture(scope="module")
def images(tiny_mnist):
    return load_images("mnist", tiny_mnist, subset=400)


def epochs(group, n: int) -> dict:
    for _ in range(n):
        train, evaluation = group.train_epoch(), group.evaluate()
    return {seed: {**train[seed], **evaluation[seed]} for seed in group.seeds}


@pytest.mark.parametrize("seeds", [[0], [0, 1]], ids=["one seed", "repeats 2"])
def test_a_resumed_light_trial_continues_exactly(images, tmp_path, seeds):
    spec = get_lab("tiny_mlp")
    cfg = TinyMLP()
    trainer = spec.load().Trainer
    straight = epochs(trainer.seed_group(cfg, images, CPU, seeds), 2)

    first = trainer.seed_group(cfg, images, CPU, seeds)
    metrics = epochs(first, 1)
    states = first.state_dicts()
    saved = {"state": states[seeds[0]], "epoch": 1, "metrics": metrics[seeds[0]], "best": metrics[seeds[0]]["val_acc"],
             "seed_states": states}
    torch.save(saved, tmp_path / loop.CHECKPOINT_FILE)
    resumed = trainer.seed_group(cfg, images, CPU, seeds)
    assert loop.resume_group(resumed, tmp_path, "val_acc")[0] == 2
    assert epochs(resumed, 1) == straight  # weights, optimizer, batch order and dropout masks all carried over
    assert straight[seeds[0]]["samples"] == len(images.y_train)


def test_a_light_lab_gets_repeats_and_promotion_asha(ray_session, tiny_mnist, tmp_path):
    """Promotion ASHA pauses trials at rungs and restores them from their checkpoints."""
    space = tmp_path / "tiny.yaml"
    space.write_text(textwrap.dedent("""
        lab: tiny_mlp
        fixed: {epochs: 3}
        params:
          lr: {grid: [0.03, 0.003, 0.0003, 0.00003]}
        search: grid
        scheduler: {promotion: {grace_period: 1, reduction_factor: 2}}
    """))
    result = tune_lab.search("tiny_mlp", str(space), repeats=2, data_dir=str(tiny_mnist), storage=str(tmp_path / "r"),
                             experiment="light", subset=400)
    table = result.table
    assert len(table) == 4 and table["best"].sum() == 1
    assert set(table["status"]) <= {"completed", "stopped early"} and (table["status"] == "completed").any()
    assert (table["status"] == "stopped early").any()  # promotion ASHA judged the light lab's trials
    assert {"val_acc_pct_mean", "val_acc_pct_ci_low", "seeds_alive", "verdict"} <= set(table.columns)
    assert (table["seeds_alive"] == 2).all()


def test_a_light_lab_refuses_what_it_cannot_run():
    with pytest.raises(tune_lab.TuneLabError, match="datasets=\\('imagenet',\\): expected shipped datasets"):
        tune_lab.lab("nope", config=TinyMLP, datasets=("imagenet",))

    @dataclass
    class NoEpochs:
        lr: float = 0.1
        seed: int = 0

    with pytest.raises(tune_lab.TuneLabError, match="NoEpochs lacks epochs"):
        tune_lab.lab("noepochs", config=NoEpochs)(lambda cfg, data, device: None)
    assert "noepochs" not in LABS


def test_an_epoch_without_its_training_loss_says_what_it_returned(images):
    @dataclass
    class Forgetful:
        epochs: int = 1
        seed: int = 0

    if "forgetful" not in LABS:
        @tune_lab.lab("forgetful", config=Forgetful)
        def forgetful(cfg, data, device):
            model = nn.Linear(28 * 28, 10)
            return model, torch.optim.SGD(model.parameters(), lr=0.1), lambda: {"val_acc": 0.5}

    trainer = get_lab("forgetful").load().Trainer(Forgetful(), images, CPU)
    with pytest.raises(ValueError, match=r"returned \['val_acc'\]: it returns at least train_loss"):
        trainer.train_epoch()
