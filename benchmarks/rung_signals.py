"""Issue 21: which value at a rung tells the lrs that end best: validation accuracy or validation loss?

    python -m benchmarks.rung_signals --data-dir $TUNE_LAB_DATA --seeds 0 1 2
    python -m benchmarks.rung_signals --from DIR          # the analysis again, on the curves of an earlier run

Trains the good part of the mlp lr search's range (twelve lrs, log-spaced from 4e-4 to 1.25e-2, where
its 20-epoch best lies) to the end with FIFO, once per seed: `tune-lab mlp --search <that grid>
--set dropout=0 --dataset mnist --seed S`, the lr search's recipe. Then, for each rung epoch of
promotion ASHA (1, 3, 9, and 2 and 6 beside them), how well each signal at that epoch predicts a
trial's best validation accuracy over its 20 epochs: Spearman's rank correlation (scipy), and what
a rung keeping its top k by that signal would have kept (the best 20-epoch result among them,
against the best of all twelve). Prints a Markdown table; writes every curve and figure as JSON
(--out, default benchmarks/results/rung-signals-TIME.json).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LRS = [0.0004, 0.0006, 0.0008, 0.0011, 0.0015, 0.002, 0.0027, 0.0036, 0.005, 0.0068, 0.0092, 0.0125]
EPOCHS = (1, 2, 3, 6, 9)
PICKS = ((1, 4), (3, 4), (3, 2), (9, 2), (9, 1))  # (rung epoch, how many it keeps)
SEARCH = """lab: mlp
description: 20-epoch curves of the good lrs (benchmarks/rung_signals.py)
fixed: {{epochs: 20, batch_size: 256, optimizer: adam, loss: cross_entropy}}
params:
  lr: {{grid: {lrs}}}
search: grid
scheduler: fifo
"""


def run_curves(data_dir: str, seed: int, storage: Path) -> Path:
    """One FIFO grid of LRS to epoch 20; the experiment folder."""
    search = storage / "rung-signals.yaml"
    search.write_text(SEARCH.format(lrs=json.dumps(LRS)))
    experiment = f"rung-signals-{seed}"
    command = [str(Path(sys.executable).with_name("tune-lab")), "mlp", "--search", str(search), "--set", "dropout=0",
               "--dataset", "mnist", "--data-dir", data_dir, "--seed", str(seed), "--storage", str(storage),
               "--experiment", experiment]
    print(f"seed {seed}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return storage / experiment


def read_curves(experiment: Path) -> list[dict[str, Any]]:
    """Each trial's lr and its per-epoch val_acc and val_loss, from the search's summary.json."""
    trials = json.loads((experiment / "summary.json").read_text())["trials"]
    return [{"lr": t["config"]["lr"], "val_acc": t["history"]["val_acc"], "val_loss": t["history"]["val_loss"]}
            for t in trials if t.get("history", {}).get("val_acc")]


def signal_figures(curves: list[dict[str, Any]], epochs=EPOCHS, picks=PICKS) -> dict[str, Any]:
    """Spearman's rho of each signal at each epoch against the 20-epoch best val acc, and what top-k picks keep."""
    from scipy.stats import spearmanr

    last = max(e for e, _ in picks)
    full = [c for c in curves if len(c["val_acc"]) >= max(max(epochs), last)]
    final = [max(c["val_acc"]) for c in full]
    signals = {"val_acc": lambda c, e: c["val_acc"][e - 1], "val_loss": lambda c, e: -c["val_loss"][e - 1]}
    rho = {name: {e: float(spearmanr([f(c, e) for c in full], final).statistic) for e in epochs} for name, f in signals.items()}
    kept = {name: {f"{e}:{k}": max(max(c["val_acc"]) for c in sorted(full, key=lambda c: -f(c, e))[:k]) for e, k in picks}
            for name, f in signals.items()}
    return {"trials": len(full), "best_of_all": max(final), "spearman": rho, "kept_best": kept}


def table(results: dict[int, dict[str, Any]]) -> str:
    lines = ["| seed | signal | " + " | ".join(f"rho at {e}" for e in EPOCHS) + " | "
             + " | ".join(f"best kept, top {k} at {e}" for e, k in PICKS) + " | best of all |",
             "|---" * (3 + len(EPOCHS) + len(PICKS)) + "|"]
    for seed, fig in results.items():
        for name in ("val_acc", "val_loss"):
            lines.append(f"| {seed} | {name} | " + " | ".join(f"{fig['spearman'][name][e]:+.2f}" for e in EPOCHS) + " | "
                         + " | ".join(f"{100 * fig['kept_best'][name][f'{e}:{k}']:.2f}" for e, k in PICKS)
                         + f" | {100 * fig['best_of_all']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TUNE_LAB_DATA"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--from", dest="source", default=None, help="a results root of an earlier run: its experiments NAME-SEED, each a FIFO grid of LRS")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"rung-signals-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    with tempfile.TemporaryDirectory(prefix="tune-lab-rung-signals-") as scratch:
        if args.source:
            experiments = {int(e.name.rsplit("-", 1)[1]): e for e in sorted(Path(args.source).glob("*-*"))
                           if e.name.rsplit("-", 1)[1].isdigit() and (e / "summary.json").is_file()}
        else:
            if not args.data_dir:
                p.error("--data-dir (or TUNE_LAB_DATA) is needed to train the curves")
            experiments = {seed: run_curves(args.data_dir, seed, Path(scratch)) for seed in args.seeds}
        curves = {seed: read_curves(folder) for seed, folder in experiments.items()}
    results = {seed: signal_figures(c) for seed, c in curves.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"lrs": LRS, "results": results, "curves": curves}, indent=1))
    print(table(results))
    print(f"\n(curves and figures: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
