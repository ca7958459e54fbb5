"""Every registered lab keeps the contract of labspec.registry and trains one tiny epoch.

Parametrised over the registry itself, so a new lab is checked the moment it registers:
trainables/linreg.py (the lab docs/adding-a-lab.md walks through) is one of them.
"""
from __future__ import annotations

import dataclasses
import math
import sys

import pytest
import torch

from benchmarks.gpu_check import SMALL  # settings that keep one epoch to seconds on a CPU
from trainables.loop import Trainer
from labspec.registry import LABS, Cost, LabContractError, LabData, LabModule, is_fraction, lab_names, register_lab
from tune_lab.spaces import SEARCH_DIR


def lab_data(name: str, tiny_mnist, tiny_eng_fra) -> LabData:
    spec = LABS[name]
    dataset = "mnist" if "mnist" in spec.datasets else spec.default_dataset
    data_dir = {"mnist": tiny_mnist, "eng_fra": tiny_eng_fra}.get(dataset)
    return spec.load().load_data(dataset, str(data_dir) if data_dir else None, subset=200)


@pytest.mark.parametrize("name", lab_names())
def test_lab_keeps_the_contract(name):
    spec = LABS[name]
    module = spec.load()
    assert isinstance(module, LabModule)
    assert issubclass(module.Trainer, Trainer)
    assert spec.metric in spec.metrics and set(spec.metrics.values()) <= {"min", "max"}
    assert dataclasses.is_dataclass(spec.config) and spec.config().epochs >= 1  # every field has a default
    assert (spec.sampler is None) == (module.sample_images is None), "sampler= and sample_images must agree"
    if spec.module_name.startswith("trainables."):
        assert sorted((SEARCH_DIR / name).glob("*.yaml")), f"search_spaces/{name}/ has no search"
        cost = spec.cost_of(dataclasses.asdict(spec.config()))  # what reproduce --dry-run plans with
        assert isinstance(cost, Cost) and cost.sample_s > 0 and cost.eval_s > 0, cost
        assert "torch" not in sys.modules[spec.config.__module__].__dict__  # registrations stay torch-free


@pytest.mark.parametrize("name", lab_names())
def test_one_tiny_epoch_reports_every_declared_metric(name, tiny_mnist, tiny_eng_fra):
    spec = LABS[name]
    data = lab_data(name, tiny_mnist, tiny_eng_fra)
    assert isinstance(data, LabData)
    assert all(n > 0 for n in data.split_sizes.values()) and data.trial_split(dataclasses.asdict(spec.config()))
    cfg = spec.config(**{"epochs": 1, **SMALL.get(name, {})})
    trainer = spec.load().Trainer(cfg, data, torch.device("cpu"))
    metrics = {**trainer.train_epoch(), **trainer.evaluate()}
    missing = set(spec.metrics) - set(metrics)
    assert not missing, f"lab {name} declares metrics it does not report: {sorted(missing)}"
    assert all(math.isfinite(metrics[m]) for m in spec.metrics)
    assert metrics["samples"] > 0
    fractions = [m for m in spec.metrics if is_fraction(m)]  # what reports show as percentages
    assert all(0.0 <= metrics[m] <= 1.0 for m in fractions), {m: metrics[m] for m in fractions}
    if "val_loss" in spec.metrics:  # the pair that draws the report's loss figure
        assert "train_loss" in spec.metrics


def test_a_fraction_must_be_one_of_the_labs_metrics():
    with pytest.raises(LabContractError, match=r"fractions \['share'\] are not among its metrics"):
        register_lab("sharelab", module=__name__, datasets=("mnist",), description="d",
                     metrics={"val_acc": "max"}, metric="val_acc", fractions=("share",))
    assert "sharelab" not in LABS and is_fraction("val_acc") and is_fraction("readable") and not is_fraction("val_loss")

