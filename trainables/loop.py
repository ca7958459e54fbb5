"""The one epoch loop every lab runs on, as a Ray Tune function trainable.

A lab supplies a `Trainer` (model, optimizer, one epoch of training, one evaluation); this
loop does the rest the same way for all of them: seeding, threads and device from what Ray
granted, resuming from a checkpoint, timing, refusing NaN losses, `tune.report` once per
epoch, and a checkpoint whenever the searched metric improves (Ray keeps only the best).
"""
from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import re
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import asdict
from typing import Any, Iterator

import torch

from labspec.config import BETTER, config_from_dict, per_seed_key, seed_list
from labspec.registry import LabSpec, get_lab
from trainables.seeds import SeedGroup, SeedSequence
from trainables.worker_exit import exit_quietly_on_unraisable_exit

CHECKPOINT_FILE = "checkpoint.pt"


class Trainer(ABC):
    """What a lab implements. Subclasses set `model`, `optimizer` and optionally `scheduler`."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    def __init__(self, cfg: Any, data: Any, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        # Shuffling draws from its own seeded generator, so batch order depends on cfg.seed only.
        self.generator = torch.Generator().manual_seed(cfg.seed)
        # What a lab draws per step where its networks run (a GAN's noise, teacher forcing's coins):
        # drawn on the CPU and copied, each step would wait for the GPU. Elsewhere (trial_device
        # gives the CPU or a GPU) it is the shuffling generator itself, so the draws on the CPU
        # are the ones the labs always made.
        self.device_generator = (torch.Generator(device).manual_seed(cfg.seed) if device.type == "cuda"
                                 else self.generator)

    @abstractmethod
    def train_epoch(self) -> dict[str, float]:
        """Train one epoch; return at least `train_loss` and `samples` (images or tokens seen)."""

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Validation and test metrics of the current model."""

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        state["rng"] = self.random_state()
        return state

    def random_state(self) -> dict[str, torch.Tensor]:
        """The generators: a resumed trial draws the batch order (and the device's draws) the
        uninterrupted one would have drawn next."""
        state = {"generator": self.generator.get_state()}
        if self.device_generator is not self.generator:
            state["device_generator"] = self.device_generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        self.load_random_state(state)

    def load_random_state(self, state: dict[str, Any]) -> None:
        """The generators of a `state_dict` (`rng`: CPU byte tensors on every device), where it has them."""
        saved = state.get("rng", {})
        if "generator" in saved:  # absent in checkpoints saved before 2026-12
            self.generator.set_state(saved["generator"])
        if "device_generator" in saved and self.device_generator is not self.generator:  # written on a GPU
            self.device_generator.set_state(saved["device_generator"].cpu())

    @classmethod
    def seed_group(cls, cfg: Any, data: Any, device: torch.device, seeds: list[int]) -> SeedGroup:
        """The seeds of one configuration (`--repeats`): one after another unless a lab overrides
        this with a batched group (see trainables.seeds)."""
        return SeedSequence(cls, cfg, data, device, seeds)


def make_optimizer(cfg: Any, params) -> torch.optim.Optimizer:
    """The optimizer a config names (every lab's, the GANs' two included).

    SGD and Adam use torch's fused kernels on a CPU or GPU: the same update up to float
    rounding (~1e-7 on the MLP's weights), done in one kernel per parameter instead of ~10
    small ops each; on the CPU, where torch otherwise takes the one-tensor-at-a-time path,
    that was ~30% of the MLP lab's step time. Adam's betas come from the config where a lab
    tunes them (the GANs' beta1 / beta2), else torch's (0.9, 0.999).
    """
    params = list(params)
    fused = _fused_ok(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay, fused=fused,
        )
    if cfg.optimizer == "adam":
        betas = (getattr(cfg, "beta1", 0.9), getattr(cfg, "beta2", 0.999))
        return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay, fused=fused)
    if cfg.optimizer == "adadelta":
        # Adadelta's lr scales its own adaptive step; the lab passes its lr straight through.
        return torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":  # the original WGAN paper's choice
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer: {cfg.optimizer!r} is not allowed; expected sgd, adam, adadelta or rmsprop")


def _fused_ok(params: list) -> bool | None:
    """True where torch has fused optimizer kernels for every parameter (float, on CPU or CUDA), else torch's default."""
    if not params or not all(isinstance(p, torch.Tensor) for p in params):
        return None  # parameter groups: leave the choice to torch
    ok = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return True if ok else None


def make_schedule(cfg: Any, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """A per-step learning-rate schedule, or None for a constant rate."""
    total = cfg.epochs * steps_per_epoch
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if cfg.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total)
    return None


def index_batches(n: int, batch_size: int, device: torch.device, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Index tensors covering 0..n-1 in batches; shuffled when a generator is given.

    Batches are index slices of tensors already on the device: no DataLoader, no per-sample
    Python, which is most of the lab loop's cost.
    """
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


NVIDIA_DRIVER_FILE = pathlib.Path("/proc/driver/nvidia/version")


class GPUUnusableError(RuntimeError):
    """A trial holds a GPU share on a node that has NVIDIA GPUs, but this torch cannot use them."""


def nvidia_driver(version_file: pathlib.Path = NVIDIA_DRIVER_FILE) -> str | None:
    """The NVIDIA kernel driver's version on this node ('580.65.06'), or None where it has none.

    Read from the file the loaded kernel module writes, not from nvidia-smi, which a container
    may lack although its GPUs work. A process told to see no GPU (CUDA_VISIBLE_DEVICES empty,
    as the test suite runs) has none to waste: None.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return None
    try:
        text = version_file.read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else "unknown"


def choose_device(gpu_ids: list, cuda_usable: bool, driver: str | None) -> torch.device:
    """The GPU Ray assigned to this trial, else the CPU; refuses a GPU share that would be wasted.

    GPUs declared with `ray start --num-gpus` on a node without any (the cluster tests, a
    laptop) run on the CPU, and the driver warns once per search (tune_lab.placement). A node
    whose NVIDIA driver is loaded but whose torch cannot use it (a cu130 wheel needs driver
    580 or newer) would otherwise train on one CPU thread while holding a GPU: the trial fails
    at once instead, with one line naming the driver and the wheel.
    """
    if gpu_ids and cuda_usable:
        return torch.device("cuda", 0)  # Ray narrowed CUDA_VISIBLE_DEVICES to the assigned GPU(s)
    if gpu_ids and driver is not None:
        raise GPUUnusableError(
            f"this trial was given GPU {','.join(map(str, gpu_ids))} but torch {torch.__version__} "
            f"(built for CUDA {torch.version.cuda or 'none: a CPU-only wheel'}) cannot use this node's NVIDIA "
            f"driver {driver}; install a torch wheel that suits the driver, or pass --gpus-per-trial 0")
    return torch.device("cpu")


def trial_device() -> torch.device:
    """The device of this trial process, from the GPUs Ray granted it (see `choose_device`)."""
    import ray

    gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []
    return choose_device(gpu_ids, torch.cuda.is_available(), nvidia_driver() if gpu_ids else None)


def set_deterministic(on: bool) -> None:
    """`--deterministic`: the same numbers from the same command on a GPU too, at some speed.

    On the CPU tune-lab's trials are already bit for bit repeatable; on a GPU, TF32 matmuls,
    cuDNN's autotuned kernels and atomics-based kernels vary from run to run. Ops that have no
    deterministic kernel warn (naming the op) rather than fail the trial. Set both ways: a reused
    trial process may have run a search of the other kind.
    """
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's requirement, read at its first use
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.allow_tf32 = not on  # torch's default is on
    if on:
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("highest")  # no TF32 in matmuls (torch's default; a lab may have changed it)


def placement(device: torch.device) -> dict[str, Any]:
    """Where this trial runs: reported with every epoch so the driver can tell nodes apart.

    Strings only, the GPU ids as JSON text ('["0"]'): Ray's MLflow and TensorBoard loggers
    skip strings silently, so these never become metrics (a bare "0" would, and a list makes
    TensorBoard warn), while result.json and the driver's callbacks keep them.
    """
    import ray

    if not ray.is_initialized():
        return {"node_id": "", "gpu_ids": "[]", "device": str(device), "threads": str(torch.get_num_threads())}
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "gpu_ids": json.dumps([str(g) for g in ray.get_gpu_ids()]),
        "device": str(device),
        "threads": str(torch.get_num_threads()),  # what _match_threads_to_cpus gave it: the CPUs Ray granted
    }


def _match_threads_to_cpus() -> None:
    import ray

    cpus = 0.0
    if ray.is_initialized():
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
    # A fractional share (--cpus-per-trial 0.5) is one thread, not the whole machine.
    torch.set_num_threads(max(1, int(cpus)) if cpus > 0 else (os.cpu_count() or 1))


def _not_finite(metrics: dict[str, float]) -> str | None:
    """The first metric that is NaN or infinite, as 'val_loss became nan', else None."""
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key} became {value}"
    return None


def _seed_mean(per_seed: dict[int, dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the live seeds: what ASHA, Optuna and the checkpoint decide on."""
    seeds = list(per_seed.values())
    return {key: sum(m[key] for m in seeds) / len(seeds) for key in seeds[0]}


def run_trial(config: dict[str, Any], *, lab: str | LabSpec, data: Any, metric: str, mode: str,
              pause_epochs: tuple[int, ...] = (), repeats: int = 1, deterministic: bool = False) -> None:
    """Ray Tune function trainable: train `lab` with `config`, reporting once per epoch.

    With `repeats` = N > 1 (`--repeats`) the trial trains N seeds of the configuration and reports
    their mean under each metric's name (so the scheduler and the search algorithm judge the
    configuration, never one lucky seed), each seed's value as `metric/seed_S`, and
    `seeds_alive`. A seed whose metrics become NaN is dropped and the others go on; the trial
    fails only when every seed has.

    `lab` may be the registered spec itself: a lab registered outside labspec.hparams
    (a user's own module) then reaches the trial process without a registry of its own.

    `pause_epochs`: epochs at which a scheduler may pause the trial (the rungs of tune_lab.schedulers). A
    checkpoint is saved there even when the metric did not improve, so that the trial resumes
    from that epoch, not from its best one (Ray restores a paused trial from its latest
    checkpoint and keeps the best one besides). Every checkpoint holds each seed's random
    streams too (`Trainer.state_dict`, `SeedGroup.state_dicts`): a restored trial draws the
    same batch orders and dropout masks as one that never stopped.

    `deterministic` (`--deterministic`): see `set_deterministic`.
    """
    from ray import tune

    exit_quietly_on_unraisable_exit()  # Ray's SIGTERM when the search ends: no traceback (see the module)
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per saved checkpoint
    spec = lab if isinstance(lab, LabSpec) else get_lab(lab)
    cfg = config_from_dict(spec.config, config)
    _match_threads_to_cpus()
    set_deterministic(deterministic)
    device = trial_device()
    where = placement(device)
    group = spec.load().Trainer.seed_group(cfg, data, device, seed_list(cfg.seed, repeats))

    first_epoch, best = 1, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry or a resumed search: continue from the saved epoch
        with checkpoint.as_directory() as folder:
            first_epoch, best = resume_group(group, folder, metric)

    for epoch in range(first_epoch, cfg.epochs + 1):
        start = time.perf_counter()
        train = group.train_epoch()
        samples = sum(m.pop("samples") for m in train.values())
        train_seconds = time.perf_counter() - start
        evaluation = group.evaluate()
        per_seed = {seed: {**train[seed], **evaluation[seed]} for seed in train}
        for seed, values in list(per_seed.items()):
            problem = _not_finite(values)
            if problem is None:
                continue
            if repeats == 1:
                raise FloatingPointError(f"{problem} at epoch {epoch}")
            del per_seed[seed]
            group.drop(seed)
            print(f"tune-lab: seed {seed} dropped: {problem} at epoch {epoch}", file=sys.stderr, flush=True)
        if not per_seed:
            raise FloatingPointError(f"every seed diverged by epoch {epoch} (the last: {problem})")
        metrics: dict[str, Any] = _seed_mean(per_seed)
        if repeats > 1:
            metrics.update({per_seed_key(k, seed): v for seed, values in per_seed.items() for k, v in values.items()})
            metrics["seeds_alive"] = len(per_seed)
        metrics["epoch_time_s"] = time.perf_counter() - start
        metrics["samples_per_s"] = samples / train_seconds
        metrics["placement"] = where
        improved = best is None or BETTER[mode](metrics[metric], best)
        # Every rung epoch is saved, so that the scheduler can pause the trial there. One that ties the
        # best exactly then becomes the kept best checkpoint (Ray keeps the later of two equal scores):
        # weights of an epoch exactly as good, so that judging the trial never depends on timing.
        if not improved and epoch not in pause_epochs:
            tune.report(metrics)
            continue
        best = metrics[metric] if improved else best
        states = group.state_dicts()
        saved = {"state": states[group.seeds[0]], "epoch": epoch, "metrics": metrics, "lab": spec.name,
                 "config": asdict(cfg), "data": data.checkpoint_info(), "best": best}
        if repeats > 1:  # `state` (the first live seed) is what reports and `generate` load; all of them resume
            saved["seed_states"] = states
        with tempfile.TemporaryDirectory() as folder:
            torch.save(saved, os.path.join(folder, CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def resume_group(group: SeedGroup, checkpoint: str | os.PathLike, metric: str) -> tuple[int, float]:
    """Restore `group` from a checkpoint `run_trial` saved; returns the epoch to go on from and the best `metric`.

    Loaded on the CPU whatever the group's device (see `load_checkpoint`): each lab's
    `load_state_dict` puts model and optimizer states on its device, and the generators take
    their CPU states as they are.
    """
    saved = load_checkpoint(checkpoint)
    group.load_state_dicts(saved.get("seed_states") or {group.seeds[0]: saved["state"]})
    return saved["epoch"] + 1, saved.get("best", saved["metrics"][metric])


def load_checkpoint(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """What `run_trial` saved (a checkpoint folder, or its checkpoint.pt), on the CPU.

    Always the CPU, whatever device the trial trains on: the random generators' states must be
    CPU byte tensors (`Generator.set_state` refuses others, a CUDA one included), and a
    checkpoint written on a GPU must restore where there is none. Model and optimizer states
    land on their parameters' device in their `load_state_dict`.

    `weights_only=True`: a checkpoint holds tensors and plain values only, so loading one from
    a shared results folder cannot run code.
    """
    path = pathlib.Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    return torch.load(path, map_location="cpu", weights_only=True)

