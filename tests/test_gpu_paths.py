"""The GPU paths, checked without a GPU (issue 35).

- Resume: a checkpoint must restore into a trial on any device. A `meta`-device trial stands in
  for a CUDA one: torch refuses a generator state that is not a CPU byte tensor in the same way
  for both, and copies CPU tensors into either device's parameters.
- Slots on an autoscaling cluster: the cluster's GPUs at start (none, `min_workers: 0`) must not
  decide how many trials run at once, nor whether trials get a GPU at all.
- A trial given a GPU that torch cannot use, on a node that has an NVIDIA driver: one line, at once.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import trainables.mlp as mlp
from trainables import cgan, loop, quality
from trainables.classify import ClassifierSeedBatch
from trainables.data import load_images
from labspec.hparams import CGANConfig, MLPConfig
from trainables.seeds import SeedSequence
from tests.test_quality import TINY_RECIPE

CPU, META = torch.device("cpu"), torch.device("meta")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images(tiny_mnist):
    return load_images("mnist", tiny_mnist, subset=256)


def save_like_run_trial(group, folder: Path, metric: str = "val_acc") -> Path:
    """The checkpoint run_trial writes after an epoch of `group`."""
    group.train_epoch()
    metrics = {seed: values for seed, values in group.evaluate().items()}
    states = group.state_dicts()
    first = group.seeds[0]
    saved = {"state": states[first], "epoch": 1, "metrics": metrics[first], "best": metrics[first][metric]}
    if len(group.seeds) > 1:
        saved["seed_states"] = states
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(saved, folder / loop.CHECKPOINT_FILE)
    return folder


def mlp_group(images, seeds, device):
    return mlp.Trainer.seed_group(MLPConfig(epochs=2, batch_size=64), images, device, seeds)


@pytest.mark.parametrize("seeds", [[0], [0, 1]], ids=["one seed", "repeats 2"])
def test_a_checkpoint_loaded_onto_the_trials_device_breaks_its_generators(images, tmp_path, seeds):
    """What run_trial did before: torch.load(map_location=the trial's device), then restore. On a
    GPU the generator states land there and torch refuses them (the TypeError of issue 35)."""
    folder = save_like_run_trial(mlp_group(images, seeds, CPU), tmp_path / "ckpt")
    saved = torch.load(folder / loop.CHECKPOINT_FILE, map_location=META, weights_only=True)
    with pytest.raises(TypeError, match="RNG state must be a torch.ByteTensor"):
        mlp_group(images, seeds, META).load_state_dicts(saved.get("seed_states") or {seeds[0]: saved["state"]})


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")  # meta parameters hold no values
@pytest.mark.parametrize("seeds", [[0], [0, 1]], ids=["one seed", "repeats 2"])
def test_resume_restores_a_trial_on_another_device(images, tmp_path, seeds):
    folder = save_like_run_trial(mlp_group(images, seeds, CPU), tmp_path / "ckpt")
    group = mlp_group(images, seeds, META)
    assert loop.resume_group(group, folder, "val_acc")[0] == 2
    shuffle = group.trainers[seeds[0]].generator.get_state()
    assert shuffle.device == CPU and shuffle.dtype == torch.uint8
    assert all(p.device == META for t in group.trainers.values() for p in t.model.parameters())


def test_a_gan_checkpoint_restores_on_another_device(tiny_mnist, tmp_path, monkeypatch):
    """The GANs' seeds keep NumPy's stream too (trainables/seeds.py): its keys must come back on the CPU."""
    from trainables.generative import load_generative_data

    monkeypatch.setenv("TUNE_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(quality, "DEFAULT_RECIPE", TINY_RECIPE)
    data = load_generative_data("mnist", tiny_mnist, subset=128)
    cfg = CGANConfig(epochs=2, batch_size=64)
    folder = save_like_run_trial(cgan.Trainer.seed_group(cfg, data, CPU, [0, 1]), tmp_path / "ckpt",
                                 metric=cgan_metric(data, cfg))
    group = cgan.Trainer.seed_group(cfg, data, CPU, [0, 1])
    saved = torch.load(folder / loop.CHECKPOINT_FILE, map_location=META, weights_only=True)
    with pytest.raises((TypeError, NotImplementedError, RuntimeError)):  # NumPy cannot read a device tensor
        group.load_state_dicts(saved["seed_states"])
    group = cgan.Trainer.seed_group(cfg, data, CPU, [0, 1])
    assert loop.resume_group(group, folder, cgan_metric(data, cfg))[0] == 2
    assert set(group.train_epoch()) == {0, 1}


def cgan_metric(data, cfg) -> str:
    from labspec.registry import get_lab

    return get_lab("cgan").metric


def test_a_batched_gpu_checkpoint_resumes_one_seed_after_another(images, tmp_path):
    """mlp --repeats on a GPU checkpoints its batched group (one device stream per seed); resumed on
    a machine without CUDA its seeds train one after another: that must go on, not KeyError."""
    cfg = MLPConfig(epochs=2, batch_size=64)
    batched = ClassifierSeedBatch(mlp.Trainer, cfg, images, CPU, [0, 1])
    folder = save_like_run_trial(batched, tmp_path / "ckpt")
    weights = {seed: state["model"] for seed, state in batched.state_dicts().items()}
    group = mlp_group(images, [0, 1], CPU)
    assert isinstance(group, SeedSequence)
    assert loop.resume_group(group, folder, "val_acc") == (2, pytest.approx(batched.evaluate()[0]["val_acc"]))
    for seed in (0, 1):
        for key, value in weights[seed].items():
            assert torch.equal(group.trainers[seed].model.state_dict()[key], value), key
    metrics = group.train_epoch()
    assert all(values["train_loss"] == values["train_loss"] for values in metrics.values())  # finite, trained on


# ---------------------------------------------------------------------------------------------
# How many trials at once on a cluster that grows


def test_the_autoscaler_config_says_what_the_cluster_grows_to():
    from tune_lab import capacity

    workers = capacity.autoscaler_workers(str(REPO / "cluster.yaml"))
    assert workers == {"CPU": 4 * 48.0, "GPU": 4 * 4.0}  # 4 g5.12xlarge workers at most
    reach = capacity.capacity({"CPU": 8.0}, workers)  # the head alone, before any worker exists
    assert capacity.slots({"cpu": 1.0, "gpu": 0.25}, reach) == 64  # cluster.yaml's "64 small trials"
    assert capacity.slots({"cpu": 1.0, "gpu": 0.0}, capacity.capacity({"CPU": 8.0}, None)) == 8
    assert capacity.autoscaler_workers(str(REPO / "missing.yaml")) is None


def test_a_joined_cluster_without_gpus_yet_reserves_them_and_runs_many_trials(ray_session, tmp_path, monkeypatch, capsys):
    """Before: 0 GPUs at start gave no GPU share and one trial at a time (Optuna's limit followed)."""
    from tune_lab.options import SearchOptions
    from tune_lab.plan import make
    from tune_lab.spaces import load_search

    monkeypatch.setenv("HOME", str(tmp_path))  # where `ray up` leaves the autoscaler's config on the head
    shutil.copy(REPO / "cluster.yaml", tmp_path / "ray_bootstrap_config.yaml")
    search = load_search("lr", "mlp", {})  # optuna + promotion ASHA, 16 trials
    planned = make(search, SearchOptions(address="auto"))
    resources, slots = planned.resources, planned.slots
    assert resources["gpu"] == search.spec.gpu_fraction > 0
    assert slots == 64
    line = capsys.readouterr().err
    assert "the cluster has 0 GPU(s) now" in line and "up to 64 trial(s) at once" in line

    (tmp_path / "ray_bootstrap_config.yaml").unlink()  # KubeRay, a laptop: the limits are not readable here
    planned = make(search, SearchOptions(address="auto", gpus_per_trial=1))
    resources, slots = planned.resources, planned.slots
    assert slots == search.trial_count() == 16
    assert "pass --max-concurrent N" in capsys.readouterr().err
    assert make(search, SearchOptions(address="auto", gpus_per_trial=1, max_concurrent=4)).slots == 4
    assert "4 trial(s) at once (--max-concurrent)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# A GPU share that torch cannot use


def test_a_gpu_that_torch_cannot_use_fails_the_trial_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build\n"
                       "GCC version:  gcc version 12.3.0\n")
    assert loop.nvidia_driver(version) == "570.86.15"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n")
    assert loop.nvidia_driver(version) == "535.104.05"
    assert loop.nvidia_driver(tmp_path / "absent") is None
    with pytest.raises(loop.GPUUnusableError) as error:
        loop.choose_device(["0"], cuda_usable=False, driver="535.104.05")
    line = str(error.value)
    assert "\n" not in line and "driver 535.104.05" in line and f"torch {torch.__version__}" in line
    assert loop.choose_device(["0"], cuda_usable=False, driver=None) == CPU  # declared GPUs that do not exist
    assert loop.choose_device([], cuda_usable=False, driver="535.104.05") == CPU
    assert loop.choose_device(["0"], cuda_usable=True, driver="580.65.06") == torch.device("cuda", 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # told to see no GPU: none to waste
    assert loop.nvidia_driver(version) is None


def test_deterministic_switch_sets_torch_both_ways():
    try:
        loop.set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.allow_tf32
    finally:
        loop.set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.allow_tf32


def test_deterministic_is_a_search_option():
    from tune_lab.cli import build_parser

    args = build_parser().parse_args(["mlp", "--search", "optimizer", "--deterministic"])
    assert args.deterministic is True


# ---------------------------------------------------------------------------------------------
# One device copy of the images per trial process


def test_a_generative_trials_seeds_share_one_copy_of_the_images(images):
    """Before: each seed's trainer made its own copy, three times over for 3-channel ('lab') input."""
    from trainables.autoencoders import Trainer as AETrainer
    from trainables.generative import image_tensors
    from labspec.hparams import AEConfig

    lab, _ = image_tensors(images, "train", channels="lab", device=CPU)
    native, _ = image_tensors(images, "train", channels="native", device=CPU)
    assert lab.shape[1] == 3 and lab.stride(1) == 0  # one channel seen three times, not three copies
    assert image_tensors(images, "train", channels="lab", device=CPU)[0].data_ptr() == lab.data_ptr()
    assert torch.equal(lab, native.repeat(1, 3, 1, 1))  # the values the copies had
    group = AETrainer.seed_group(AEConfig(epochs=1), images, CPU, [0, 1])
    first, second = (group.trainers[seed].splits["train"] for seed in (0, 1))
    assert first.data_ptr() == second.data_ptr()
