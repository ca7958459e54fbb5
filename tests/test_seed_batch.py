"""The mlp lab's batched seeds (`ClassifierSeedBatch` + `trainables.mlp.group_models`), without Ray.

Each seed of a batched group must train as a single-seed trial with that seed does: same
initial weights, same batches, same dropout masks, its own loss and optimizer state. In
float64 that holds to ~1e-12 (any real difference, such as a gradient scaled by 1/N, a wrong
batch order or mask, shows far above it); in float32, where the grouped kernels round
differently, Adam's first steps turn rounding-level gradients into +-lr updates, so the
float32 checks use wider bounds.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import trainables.classify as classify
import trainables.mlp as mlp
from benchmarks import seeds_epoch
from trainables.classify import ClassifierSeedBatch
from trainables.data import load_images
from labspec.hparams import MLPConfig
from trainables.mlp import MLP, Trainer
from trainables.seeds import SeedSequence, seed_everything

CPU = torch.device("cpu")
SEEDS = [3, 4, 5]
CONFIGS = {
    "adam, no dropout": dict(dropout=0.0),
    "default (adam, dropout 0.1, cosine)": dict(),
    "the lab's network (faithful)": dict(faithful=True),
    "softmax regression": dict(model="softmax"),
    "sgd, nesterov, nll": dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, loss="nll"),
    "adadelta, mse": dict(optimizer="adadelta", lr=1.0, loss="mse"),
}


@pytest.fixture(scope="module")
def data(tiny_mnist):
    return load_images("mnist", tiny_mnist)


@pytest.fixture
def float64(monkeypatch):
    """Models built and data loaded in float64, so that rounding cannot hide a real difference."""
    to_device = classify.to_device_tensors
    monkeypatch.setattr(classify, "to_device_tensors", lambda *args: (lambda x, y: (x.double(), y))(*to_device(*args)))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


def config(**overrides) -> MLPConfig:
    return MLPConfig(epochs=3, batch_size=64, **overrides)


def single_seed_trial(cfg: MLPConfig, data, seed: int, epochs: int) -> tuple[Trainer, dict[str, float]]:
    """What a one-seed trial with `seed` trains (run_trial seeds everything, then builds its Trainer)."""
    seed_everything(seed)
    trainer = Trainer(dataclasses.replace(cfg, seed=seed), data, CPU)
    for _ in range(epochs):
        metrics = {**trainer.train_epoch(), **trainer.evaluate()}
    return trainer, metrics


def batched_epochs(group: ClassifierSeedBatch, epochs: int) -> dict[int, dict[str, float]]:
    for _ in range(epochs):
        train, evaluation = group.train_epoch(), group.evaluate()
    return {seed: {**train[seed], **evaluation[seed]} for seed in group.seeds}


def assert_same_run(metrics: dict[str, float], state: dict, single_metrics: dict[str, float], single_state: dict,
                    metric_tol: float, weight_tol: float) -> None:
    assert metrics.keys() == single_metrics.keys()
    for key, value in single_metrics.items():
        assert metrics[key] == pytest.approx(value, abs=metric_tol), key
    assert state["model"].keys() == single_state["model"].keys()
    for key, value in single_state["model"].items():
        torch.testing.assert_close(state["model"][key], value, atol=weight_tol, rtol=0, msg=key)


@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_each_seed_trains_as_its_single_seed_trial_float64(data, float64, overrides):
    cfg = config(**overrides)
    group = ClassifierSeedBatch(Trainer, cfg, data, CPU, SEEDS)
    batched, states = batched_epochs(group, 2), group.state_dicts()
    assert next(group.model.parameters()).dtype == torch.float64
    singles = {}
    for seed in SEEDS:
        trainer, metrics = single_seed_trial(cfg, data, seed, 2)
        singles[seed] = trainer.state_dict()["model"]
        assert_same_run(batched[seed], states[seed], metrics, trainer.state_dict(), metric_tol=1e-9, weight_tol=1e-9)
    # The bound means something: another seed's run is nowhere near it.
    assert max((states[3]["model"][key] - value).abs().max() for key, value in singles[4].items()) > 1e-2


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_each_seed_matches_its_single_seed_trial_float32(data, dropout):
    """One float32 epoch: metrics within 1e-3, weights within 2e-2 (measured: 1.4e-5 and 8.5e-3
    without dropout, 6e-8 and 3.3e-5 with it; Adam's first step moves a weight by +-lr = 0.005
    whichever way a rounding-level gradient's sign falls)."""
    cfg = config(dropout=dropout)
    group = ClassifierSeedBatch(Trainer, cfg, data, CPU, SEEDS)
    batched, states = batched_epochs(group, 1), group.state_dicts()
    for seed in SEEDS:
        trainer, metrics = single_seed_trial(cfg, data, seed, 1)
        assert_same_run(batched[seed], states[seed], metrics, trainer.state_dict(), metric_tol=1e-3, weight_tol=2e-2)


def test_seed_states_load_into_a_plain_mlp_and_a_single_seed_trainer(data):
    cfg = config()
    group = ClassifierSeedBatch(Trainer, cfg, data, CPU, SEEDS)
    batched = batched_epochs(group, 1)
    for seed, state in group.state_dicts().items():
        MLP(math.prod(data.shape), data.num_classes, dropout=cfg.dropout).load_state_dict(state["model"])  # strict
        trainer = Trainer(dataclasses.replace(cfg, seed=seed), data, CPU)
        trainer.load_state_dict(state)  # the optimizer's and schedule's state too
        evaluation = trainer.evaluate()
        assert evaluation["val_acc"] == batched[seed]["val_acc"]
        assert evaluation["val_loss"] == pytest.approx(batched[seed]["val_loss"], abs=1e-5)
        assert trainer.scheduler.last_epoch == group.scheduler.last_epoch > 0
        assert trainer.optimizer.state_dict()["state"][0]["exp_avg"].shape == trainer.model[1].weight.shape


def test_state_round_trip_continues_exactly(data):
    cfg = config()
    kept, reloaded = (ClassifierSeedBatch(Trainer, cfg, data, CPU, SEEDS) for _ in range(2))
    batched_epochs(kept, 1), batched_epochs(reloaded, 1)
    states = reloaded.state_dicts()
    reloaded.load_state_dicts(states)
    for seed, state in reloaded.state_dicts().items():
        for key, value in states[seed]["model"].items():
            assert torch.equal(state["model"][key], value)
        assert state["optimizer"]["param_groups"] == states[seed]["optimizer"]["param_groups"]
    assert batched_epochs(reloaded, 1) == batched_epochs(kept, 1)  # the moments, the schedule: all restored


def test_a_resumed_group_continues_as_resumed_single_seed_trials(data, float64):
    """Per-seed states saved by single-seed trials resume the group, which then trains on as those
    trials would (float64: exact to rounding). Loading must copy what it shares: the states stay usable."""
    cfg = config()
    states = {seed: single_seed_trial(cfg, data, seed, 1)[0].state_dict() for seed in SEEDS}
    group = ClassifierSeedBatch(Trainer, cfg, data, CPU, SEEDS)
    group.load_state_dicts(states)
    batched, resumed = batched_epochs(group, 1), group.state_dicts()
    for seed in SEEDS:  # run_trial resuming a single-seed trial: seed, build, load, train on
        seed_everything(seed)
        trainer = Trainer(dataclasses.replace(cfg, seed=seed), data, CPU)
        trainer.load_state_dict(states[seed])
        metrics = {**trainer.train_epoch(), **trainer.evaluate()}
        assert_same_run(batched[seed], resumed[seed], metrics, trainer.state_dict(), metric_tol=1e-9, weight_tol=1e-9)


def test_drop_removes_the_seed_and_the_others_go_on_unchanged(data):
    cfg = config()
    full, dropping = (ClassifierSeedBatch(Trainer, cfg, data, CPU, SEEDS) for _ in range(2))
    batched_epochs(full, 1), batched_epochs(dropping, 1)
    dropping.drop(4)
    assert dropping.seeds == [3, 5] and dropping.model[2].weight.shape[0] == 2  # gone from the stacked tensors
    assert set(dropping.state_dicts()) == {3, 5}
    after, reference = batched_epochs(dropping, 1), batched_epochs(full, 1)
    assert set(after) == {3, 5}
    for seed in (3, 5):
        for key, value in reference[seed].items():
            assert after[seed][key] == pytest.approx(value, abs=1e-6), key
    dropping.load_state_dicts({3: dropping.state_dicts()[3]})  # a seed missing from a checkpoint is dropped too
    assert dropping.seeds == [3] and set(dropping.evaluate()) == {3}
    dropping.drop(3)  # every seed diverged: run_trial reports that, the group must not fail first
    assert dropping.seeds == []


def test_a_diverged_seed_leaves_the_others_untouched(data):
    """Until run_trial drops it, a NaN seed trains beside the others: nothing it computes may reach them."""
    clean, poisoned = (ClassifierSeedBatch(Trainer, config(), data, CPU, SEEDS) for _ in range(2))
    with torch.no_grad():
        poisoned.model[2].weight[1] = float("nan")  # seed 4's first Linear
    expected, got = batched_epochs(clean, 1), batched_epochs(poisoned, 1)
    assert math.isnan(got[4]["train_loss"]) and math.isnan(got[4]["val_loss"])
    for seed in (3, 5):
        for key, value in expected[seed].items():
            assert got[seed][key] == pytest.approx(value, abs=1e-6), key


def test_mlp_batches_its_seeds_on_a_gpu_only(data, monkeypatch):
    cfg = config()
    assert isinstance(Trainer.seed_group(cfg, data, CPU, SEEDS), SeedSequence)
    chosen = []
    monkeypatch.setattr(mlp, "ClassifierSeedBatch", lambda *args: chosen.append(args) or "batched")
    assert Trainer.seed_group(cfg, data, torch.device("cuda"), SEEDS) == "batched" and chosen


def test_labs_without_a_grouped_network_are_refused(data):
    from trainables.resnet import Trainer as ResNetTrainer

    with pytest.raises(NotImplementedError, match="augments"):
        ClassifierSeedBatch(ResNetTrainer, None, data, CPU, SEEDS)


def test_seeds_benchmark_runs(tiny_mnist):
    result = seeds_epoch.run(quick=True, reps=1, threads=1, data_dir=str(tiny_mnist), device="cpu")
    assert {row["case"] for row in result["cases"]} == {f"{net}/{case}" for net in seeds_epoch.NETWORKS
                                                      for case in ("batched", "separate", "sequence")}
    assert all(row["median_s"] > 0 for row in result["cases"])
    assert len(result["targets"]) == 2 and all(t["op"] == "<=" for t in result["targets"])
