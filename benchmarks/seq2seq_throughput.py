"""Training tokens/s of the seq2seq lab's Trainer vs a plain hand-written PyTorch loop.

Both train the same encoder / decoder (same cell, attention, hidden size, seed, batch size,
fused Adam, gradient clipping) on the same padded tensors. The plain loop is what one writes
by hand: shuffled batches cut to their longest sentence, forward, masked NLL, backward, step.
The trainer adds its machinery (length-bucketed batches, on-device loss sums, one sync per
epoch). Tokens = the real (non-pad) source and target words of an epoch, incl. EOS / SOS, the
same count for both. Epochs are interleaved (benchmarks.timing.interleave) so that load from
other processes hits both alike; the figure is the median. Part of
`python -m benchmarks.run --only seq2seq`; on its own:

    python -m benchmarks.seq2seq_throughput                  # 1 thread, GRU + attention, 1024 pairs
    python -m benchmarks.seq2seq_throughput --cell gru_scratch --pairs 2048
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from benchmarks.timing import case_row, interleave, target
from labspec.errors import DatasetUnavailable
from labspec.hparams import Seq2SeqConfig
from trainables.seq2seq import Split, Trainer, build_model
from trainables.translation_data import SentencePairs, Side, load_pairs

MIN_RATIO = 0.9  # the trainer keeps at least 90% of the plain loop's throughput


def synthetic_pairs(n: int, seed: int = 0) -> SentencePairs:
    """Random 3-9 word 'sentences' over 2,000 words, every English side prefixed: when eng-fra.txt is absent."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(2000)]
    french = [list(rng.choice(words, rng.integers(3, 10))) for _ in range(n)]
    english = [["i", "am", *rng.choice(words, rng.integers(1, 8))] for _ in range(n)]
    table: dict[str, int] = {}
    fr, en = Side.build(french, table), Side.build(english, table)
    splits = {"train": np.arange(n), "val": np.arange(1), "test": np.arange(1)}
    return SentencePairs("synthetic", list(table), fr, en, np.ones(n, dtype=bool), splits)


def eng_fra(data_dir: str | None) -> SentencePairs | None:
    try:
        return load_pairs("eng_fra", data_dir, allow_download=False)
    except DatasetUnavailable:
        return None


class PlainLoop:
    """A hand-written loop over the same model class and tensors: random batches, no bucketing."""

    def __init__(self, cfg: Seq2SeqConfig, split: Split, src_vocab: int, tgt_vocab: int, device: torch.device) -> None:
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg, src_vocab, tgt_vocab).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, fused=True)
        self.split, self.batch, self.clip = split, cfg.batch_size, cfg.grad_clip
        self.loss = nn.CrossEntropyLoss(ignore_index=2)  # PAD

    def epoch(self) -> int:
        self.model.train()
        order = torch.randperm(len(self.split)).numpy()
        for start in range(0, len(order), self.batch):
            src, lengths, tgt_in, tgt_out = self.split.batch(order[start : start + self.batch])
            logits = self.model(src, lengths, tgt_in)
            loss = self.loss(logits.flatten(0, 1), tgt_out.flatten())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
        loss.item()
        return len(order)


def cpu_seconds(epoch: Callable[[], Any]) -> Callable[[], float]:
    """`epoch` as a call returning the CPU time it took (the harness times the wall clock itself)."""
    def timed() -> float:
        start = time.process_time()
        epoch()
        return time.process_time() - start
    return timed


def run(quick: bool, reps: int, threads: int, *, cell: str = "gru", attention: bool = True, pairs: int | None = None,
        batch_size: int = 64, hidden_size: int = 256, device: str | None = None,
        data_dir: str | None = None) -> dict[str, Any]:
    """Interleaved training epochs of the Trainer and the plain loop; target: trainer >= 0.9x plain tokens/s."""
    torch.set_num_threads(threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pairs = pairs or (128 if quick else 1024)
    data = eng_fra(data_dir) or synthetic_pairs(4 * pairs)
    cfg = Seq2SeqConfig(cell=cell, attention=attention, batch_size=batch_size, hidden_size=hidden_size, epochs=1000)
    trainer = Trainer(cfg, data, dev)
    full = trainer.splits["train"]
    maps = trainer.src_vocab.table_map(data.words), trainer.tgt_vocab.table_map(data.words)
    trainer.splits["train"] = split = Split(data, full.idx[:pairs], *maps, dev)
    plain = PlainLoop(cfg, split, len(trainer.src_vocab), len(trainer.tgt_vocab), dev)
    timings = interleave({"trainer": cpu_seconds(trainer.train_epoch), "plain": cpu_seconds(plain.epoch)}, reps)
    tokens = int(split.src_len.sum() + split.tgt_len.sum())
    rate = {name: tokens / timings.median(name) for name in timings.seconds}
    cpu_rate = {name: tokens / statistics.median(cpu) for name, cpu in timings.returned.items()}
    ratio = rate["trainer"] / rate["plain"]
    return {
        "name": "seq2seq",
        "title": f"Lab 3 encoder / decoder ({cell}{' + attention' if attention else ''}), one training epoch",
        "settings": {"dataset": f"{data.name} (max_length 10, English prefixes)", "train_pairs": len(split),
                     "tokens_per_epoch": tokens, "batch_size": batch_size, "hidden_size": hidden_size,
                     "device": str(dev), "threads": threads, "reps": reps},
        "cases": [case_row(name, secs, tokens_per_s=round(rate[name], 1), tokens_per_cpu_s=round(cpu_rate[name], 1))
                  for name, secs in timings.seconds.items()],
        "ratios": {"trainer_over_plain_tokens_per_s": round(ratio, 3),
                   "trainer_over_plain_tokens_per_cpu_s": round(cpu_rate["trainer"] / cpu_rate["plain"], 3)},
        "targets": [target("seq2seq: trainer tokens/s / plain loop tokens/s", ratio, ">=", MIN_RATIO)],
        "notes": ["tokens = non-pad source + target words (EOS / SOS included); the trainer buckets batches by "
                  "source length, the plain loop draws them at random",
                  "tokens_per_cpu_s divides by the process's CPU time of the epoch: on a loaded machine it "
                  "moves much less than wall time, so its ratio is the steadier check"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=["rnn", "gru", "lstm", "gru_scratch"], default="gru")
    parser.add_argument("--no-attention", action="store_true")
    parser.add_argument("--pairs", type=int, default=1024, help="training pairs per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5, help="timed epochs of each, interleaved (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (a 1-CPU Ray trial uses 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    result = run(False, args.reps, args.threads, cell=args.cell, attention=not args.no_attention, pairs=args.pairs,
                 batch_size=args.batch_size, hidden_size=args.hidden_size, device=args.device)
    for row in result["cases"]:
        print(f"  {row['case']:<8} {row['tokens_per_s']:9.1f} tokens/s, {row['tokens_per_cpu_s']:9.1f} per CPU s "
              f"(median of {args.reps})")
    print(f"  ratio {result['ratios']['trainer_over_plain_tokens_per_s']:.3f}x (target >= {MIN_RATIO}x); "
          f"per CPU second {result['ratios']['trainer_over_plain_tokens_per_cpu_s']:.3f}x")


if __name__ == "__main__":
    main()
