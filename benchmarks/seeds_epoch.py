"""Lab 1 MLP with `--repeats 5`: one epoch of 5 seeds trained as one batched computation
against 5 separate single-seed epochs, same data, config and threads, in one run.

- `batched`: `trainables.classify.ClassifierSeedBatch` (the mlp's grouped network: one
  (B, 5, ...) step trains all five seeds);
- `separate`: five single-seed `trainables.mlp.Trainer`s, each built after `seed_everything`,
  one epoch each: what five separate trials compute;
- `sequence`: `trainables.seeds.SeedSequence`, what a `--repeats 5` trial runs without batching
  (the five trainers, each seed's random streams swapped in around its work).

One epoch = every seed's training pass plus its evaluation (validation 5,000 + test 10,000), as
a trial reports it. Two networks, as in benchmarks/mlp_epoch.py: `lab_net` (the lab's MLP,
`faithful: true`, no dropout) and `default` (logits, dropout 0.1); MLPConfig's Adam, lr 0.005,
weight decay 1e-4, cosine schedule over 1,000 epochs (the rate hardly moves while timed).

Runs on the GPU when torch sees one (or `device="cuda"`), else on the CPU; GPU work is
synchronised before each timing ends. All trainers read one copy of the data (memory only:
separate trials would each hold their own).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import torch

from benchmarks.timing import epoch_rows, interleave, target
from trainables.classify import ClassifierSeedBatch
from trainables.data import ImageData, load_images
from labspec.hparams import MLPConfig
from trainables.mlp import Trainer
from trainables.seeds import SeedSequence, seed_everything

SEEDS = [0, 1, 2, 3, 4]  # the seeds of `--seed 0 --repeats 5`
NETWORKS = {
    "lab_net": "the lab's MLP as written (faithful: no dropout, ReLU + softmax on the output)",
    "default": "tune-lab's corrected default MLP (logits, dropout 0.1)",
}


def pick_device(device: str | None) -> torch.device:
    """`device` if given ("cpu", "cuda"), else the GPU when torch sees one, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _timed(train: Callable[[], Any], evaluate: Callable[[], Any], device: torch.device) -> Callable[[], dict[str, float]]:
    """One epoch (`train`, then `evaluate`) returning the seconds of each, the GPU synchronised at each end."""

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def epoch() -> dict[str, float]:
        start = sync()
        train()
        trained = sync()
        evaluate()
        return {"train_s": trained - start, "eval_s": sync() - trained}

    return epoch


def _cases(cfg: MLPConfig, data: ImageData, device: torch.device) -> dict[str, Callable[[], dict[str, float]]]:
    batched = ClassifierSeedBatch(Trainer, cfg, data, device, SEEDS)
    sequence = SeedSequence(Trainer, cfg, data, device, SEEDS)
    separate = []
    for seed in SEEDS:
        seed_everything(seed)
        separate.append(Trainer(dataclasses.replace(cfg, seed=seed), data, device))
    for trainer in [*separate, *sequence.trainers.values()]:
        trainer.splits = batched.trainer.splits  # one copy of the data in memory
    return {
        "batched": _timed(batched.train_epoch, batched.evaluate, device),
        "separate": _timed(lambda: [t.train_epoch() for t in separate], lambda: [t.evaluate() for t in separate], device),
        "sequence": _timed(sequence.train_epoch, sequence.evaluate, device),
    }


def run(quick: bool, reps: int, threads: int, data_dir: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Interleaved epochs of 5 seeds three ways x two networks; target: batched <= 0.6x separate."""
    torch.set_num_threads(threads)
    where = pick_device(device)
    data = load_images("mnist", data_dir, subset=8192 if quick else None, allow_download=False)
    cases: dict[str, Callable[[], Any]] = {}
    for net in NETWORKS:
        cfg = MLPConfig(epochs=1000, faithful=net == "lab_net")
        cases |= {f"{net}/{name}": case for name, case in _cases(cfg, data, where).items()}
    timings = interleave(cases, reps)
    rows, train_s = epoch_rows(timings, len(data.y_train) * len(SEEDS))
    ratios: dict[str, float] = {}
    targets = []
    for net in NETWORKS:
        batched, separate, sequence = (timings.median(f"{net}/{c}") for c in ("batched", "separate", "sequence"))
        ratios |= {f"{net}: batched_over_separate": round(batched / separate, 3),
                   f"{net}: sequence_over_separate": round(sequence / separate, 3),
                   f"{net}: training_pass_only_batched_over_separate":
                       round(train_s[f"{net}/batched"] / train_s[f"{net}/separate"], 3)}
        targets.append(target(f"mlp, 5 seeds ({net}, {where.type}): batched epoch / 5 separate single-seed epochs",
                              batched / separate, "<=", 0.6))
    return {
        "name": "seeds",
        "title": f"Lab 1 MLP, one epoch of {len(SEEDS)} seeds on MNIST: batched vs separate vs one after another",
        "settings": {"dataset": data.name, "train_images_per_seed": len(data.y_train), "seeds": SEEDS,
                     "batch_size": cfg.batch_size, "threads": threads, "device": str(where), "reps": reps,
                     "networks": NETWORKS, "optimizer": cfg.optimizer, "lr_schedule": cfg.lr_schedule},
        "cases": rows,
        "ratios": ratios,
        "targets": targets,
        "notes": ["median_s = the whole epoch of all 5 seeds (training + validation + test); "
                  "train_images_per_s counts every seed's images",
                  "separate = 5 single-seed Trainers one after another; sequence = SeedSequence; "
                  "batched = ClassifierSeedBatch (what trainables.mlp.Trainer.seed_group picks on a GPU)"],
    }


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.reps, args.threads, args.data_dir, args.device), indent=2, default=str))
