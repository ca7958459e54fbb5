"""A lab whose trials fail or dawdle on request: lab 1's MLP, plus `fail_at_epoch` and `slow_lr` / `slow_s`.

Registered like any user's own lab (a dataclass + `register_lab` naming this module), so
the tests can watch the real loop, Ray and MLflow handle a trial whose code raises.
"""
from __future__ import annotations

from dataclasses import dataclass

from trainables import mlp
from labspec.config import hp
from labspec.hparams import CLASSIFIER_METRICS, MLPConfig
from labspec.registry import LABS, register_lab
from trainables.seeds import SeedSequence

load_data, report_figures, report_text, sample_images = mlp.load_data, None, None, None


@dataclass
class FlakyConfig(MLPConfig):
    fail_at_epoch: int = hp(0, min=0, help="raise in this epoch (0: never)")
    diverge_seed: int = hp(-1, min=-1, help="the seed whose training loss is NaN from epoch 2 on (-1: none)")
    slow_lr: float = hp(-1.0, help="the trial with this lr sleeps `slow_s` in each epoch (-1: none)")
    slow_s: float = hp(0.0, min=0, help="seconds the slow trial sleeps per epoch")


if "flaky" not in LABS:
    register_lab("flaky", module=__name__, datasets=("mnist",), description="lab 1 that fails or dawdles on request",
                 metrics=CLASSIFIER_METRICS, metric="val_acc")(FlakyConfig)


class Trainer(mlp.Trainer):
    epoch = 0

    @classmethod
    def seed_group(cls, cfg, data, device, seeds):
        """One seed after another on any device: the failures are injected in `train_epoch`,
        which mlp's batched group (its GPU path) never calls."""
        return SeedSequence(cls, cfg, data, device, seeds)

    def train_epoch(self) -> dict[str, float]:
        self.epoch += 1
        if self.epoch == self.cfg.fail_at_epoch:
            raise RuntimeError(f"flaky lab: failing in epoch {self.epoch} as configured")
        if self.cfg.lr == self.cfg.slow_lr:
            import time

            time.sleep(self.cfg.slow_s)  # its process reports late: the others overtake it at every rung
        metrics = super().train_epoch()
        if self.cfg.seed == self.cfg.diverge_seed and self.epoch >= 2:
            metrics["train_loss"] = float("nan")
        return metrics
