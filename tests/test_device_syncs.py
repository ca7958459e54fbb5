"""Issue 35, item 4: no lab waits for the device every training step.

On a GPU, each `.item()`, `.tolist()` or `.cpu()` a lab calls, and each copy it makes between
host and device, waits for the device's queued work. The CPU has no such wait to measure, so
these tests count the calls that would make one, made by the labs' own code (torch's inside
is torch's business), over a training epoch of 2 steps and one of 8: a lab that syncs once
per epoch, not once per step, counts the same for both.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable

import pytest
import torch

from tests.test_quality import TINY_RECIPE
from trainables import cgan, linreg, quality, seq2seq, wgan
from trainables.generative import load_generative_data
from labspec.hparams import CGANConfig, LinRegConfig, Seq2SeqConfig, WGANConfig
from trainables.translation_data import load_pairs

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__")  # device -> host
COPIES = ((torch.Tensor, "to"), (torch, "as_tensor"), (torch, "tensor"))  # host -> device where a device is named


def syncs_of(work: Callable[[], Any]) -> list[str]:
    """What `work` calls from trainables.* that would wait for a GPU, one 'item from trainables.linreg' per call."""
    calls: list[str] = []

    def counted(owner: Any, name: str, patch: pytest.MonkeyPatch) -> None:
        original = getattr(owner, name)
        copies = name not in READS

        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            device_args = args[1:] if owner is torch.Tensor else ()  # .to(device): not .to(dtype)
            named = "device" in kwargs or any(isinstance(a, (torch.device, str)) for a in device_args)
            if caller.startswith("trainables.") and (named or not copies):
                calls.append(f"{name} from {caller}")
            return original(*args, **kwargs)

        patch.setattr(owner, name, wrapper)

    with pytest.MonkeyPatch.context() as patch:
        for owner, name in [(torch.Tensor, name) for name in READS] + list(COPIES):
            counted(owner, name, patch)
        work()
    return calls


def assert_syncs_once_per_epoch(make_trainer: Callable[[int], Any], two_steps: int, eight_steps: int) -> None:
    """An epoch at batch size `two_steps` and one at `eight_steps` make the same syncs, at least the
    one that reads the epoch's loss back."""
    counts = {size: syncs_of(make_trainer(size).train_epoch) for size in (two_steps, eight_steps)}
    assert counts[two_steps], "no sync seen, not even the epoch's loss: the count checks nothing"
    assert sorted(counts[eight_steps]) == sorted(counts[two_steps]), f"syncs grow with the steps: {counts}"


def test_the_count_sees_a_sync_per_step():
    """The check itself: a `.item()` per step in a lab's code counts once a step."""
    def epoch(steps: int) -> Callable[[], None]:
        lab_code = {"__name__": "trainables.some_lab", "torch": torch, "steps": steps}
        return lambda: exec("for _ in range(steps): torch.ones(()).item()", lab_code)

    assert len(syncs_of(epoch(2))) == 2 and len(syncs_of(epoch(8))) == 8


def test_linreg_syncs_once_per_epoch():
    def trainer(batch_size: int) -> linreg.Trainer:
        torch.manual_seed(0)
        return linreg.Trainer(LinRegConfig(batch_size=batch_size), linreg.load_data("synthetic", subset=64),
                              torch.device("cpu"))

    assert_syncs_once_per_epoch(trainer, 32, 8)


@pytest.fixture(scope="module")
def gan_data(tiny_mnist):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quality, "DEFAULT_RECIPE", TINY_RECIPE)
        return load_generative_data("mnist", tiny_mnist, subset=64)


@pytest.mark.parametrize("lab, cfg", [
    (wgan, WGANConfig(n_critic=1, latent_dim=16, quality_samples=10)),  # noise, and the gradient penalty's mix
    (cgan, CGANConfig(n_critic=1, latent_dim=16, quality_samples=10, width=4)),  # noise and fake labels
], ids=["wgan", "cgan"])
def test_gans_sync_once_per_epoch(gan_data, lab, cfg):
    def trainer(batch_size: int):
        torch.manual_seed(0)
        return lab.Trainer(dataclasses.replace(cfg, batch_size=batch_size), gan_data, torch.device("cpu"))

    assert_syncs_once_per_epoch(trainer, 32, 8)


@pytest.mark.parametrize("cell", ["gru", "gru_scratch"])  # packing's lengths; the scratch cell's mask
def test_seq2seq_syncs_once_per_epoch(tiny_eng_fra, cell):
    cfg = Seq2SeqConfig(cell=cell, hidden_size=8, teacher_forcing=0.5)  # teacher forcing's coin flips too
    data = load_pairs("eng_fra", tiny_eng_fra)

    def trainer(batch_size: int) -> seq2seq.Trainer:
        torch.manual_seed(0)
        return seq2seq.Trainer(dataclasses.replace(cfg, batch_size=batch_size), data, torch.device("cpu"))

    pairs = len(data.select("train", cfg.max_length, cfg.eng_prefix_filter))
    assert_syncs_once_per_epoch(trainer, -(-pairs // 2), -(-pairs // 8))


def test_seq2seq_resumes_the_coin_flips_of_its_device_generator(tiny_eng_fra):
    """On a GPU teacher forcing flips its coins with a generator of its own, saved beside the shuffling one: a
    resumed trial flips the coins the uninterrupted one would have. A second CPU generator stands in for it here."""
    cfg = Seq2SeqConfig(hidden_size=8, batch_size=16, teacher_forcing=0.5, dropout=0.0)
    data = load_pairs("eng_fra", tiny_eng_fra)

    def trainer() -> seq2seq.Trainer:
        torch.manual_seed(0)
        made = seq2seq.Trainer(cfg, data, torch.device("cpu"))
        made.device_generator = torch.Generator().manual_seed(cfg.seed)  # as on a GPU: not the shuffling generator
        return made

    whole, first, resumed = trainer(), trainer(), trainer()
    whole.train_epoch()
    first.train_epoch()
    resumed.load_state_dict(first.state_dict())
    assert resumed.train_epoch() == whole.train_epoch()
