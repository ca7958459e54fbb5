"""Issue 21, side by side: the Optuna peer against `tune-lab mlp --search lr`, in one run.

    python -m benchmarks.early_stopping --data-dir $TUNE_LAB_DATA [--schedulers promotion asha] [--rounds 1] [--common-seed-peer] [--plain-peer]
    python -m benchmarks.early_stopping --data-dir $TUNE_LAB_DATA --rungs 1:3 2:3 --seeds 0 1 2 3

Each side runs as its own fresh process, one after another (the peer first in odd rounds,
last in even ones), on the same machine: `python -m benchmarks.optuna_peer` and
`tune-lab mlp --search lr --set dropout=0 --dataset mnist --seed 0 --scheduler S` (the network
the peer trains: the lab's corrected MLP without dropout). Wall time is the whole process,
interpreter start, data load, Ray start, MLflow and report included. Prints a Markdown table
and one JSON line per run (also written to --out).

`--summarize FILE ...` runs nothing: it reads earlier results (JSON lines) and prints, against each
kind of peer, how many seeds meet each line of the acceptance and the paired averages over seeds
(scipy's paired t-test), the latest run of each side and seed counting. Give it the files of one
version of the code (docs/benchmarks.md names them):

    python -m benchmarks.early_stopping --summarize benchmarks/results/early-stopping-A.jsonl early-stopping-B.jsonl

`--rungs G:R ...` runs promotion ASHA once per pair instead of the search file's own rungs: the
file `search_spaces/mlp/lr.yaml` with `scheduler: {promotion: {grace_period: G, reduction_factor:
R}}`, written beside the results. `--seeds` gives each round its own seed, the same on both
sides (one round per seed; --rounds is then ignored).
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


def _python() -> str:
    return sys.executable


def run_peer(data_dir: str, seed: int, variant: str | None = None) -> dict[str, Any]:
    began = time.perf_counter()
    flags = {None: [], "common": ["--common-seed"], "plain": ["--recipe", "plain"]}[variant]
    out = subprocess.run([_python(), "-m", "benchmarks.optuna_peer", "--data-dir", data_dir, "--seed", str(seed), *flags],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - began
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": round(wall, 1), "inner_wall_s": result["wall_s"]}


def lr_search_with_rungs(rungs: str, folder: str) -> str:
    """lr.yaml with promotion ASHA at `rungs` ("G:R": grace period, reduction factor), as a file in `folder`."""
    import yaml

    grace, factor = rungs.split(":")
    doc = yaml.safe_load((ROOT / "search_spaces" / "mlp" / "lr.yaml").read_text())
    doc["lab"] = "mlp"  # a search file outside search_spaces/ names its lab
    doc["scheduler"] = {"promotion": {"grace_period": int(grace), "reduction_factor": float(factor)}}
    path = Path(folder) / f"lr-rungs-{grace}-{factor}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def run_tune_lab(data_dir: str, seed: int, scheduler: str, storage: str, rungs: str | None = None) -> dict[str, Any]:
    experiment = f"bench21-{scheduler}-{(rungs or '').replace(':', '-')}-{time.strftime('%H%M%S')}"
    search = lr_search_with_rungs(rungs, storage) if rungs else "lr"
    command = [str(Path(_python()).with_name("tune-lab")), "mlp", "--search", search, "--set", "dropout=0",
               "--dataset", "mnist", "--data-dir", data_dir, "--seed", str(seed), "--scheduler", scheduler,
               "--storage", storage, "--experiment", experiment]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads((Path(storage) / experiment / "summary.json").read_text())
    trials, best = summary["trials"], summary["best"]
    return {
        "side": f"tune-lab ({scheduler}{', rungs ' + rungs if rungs else ''})", "seed": seed, "command": "tune-lab " + " ".join(command[1:]),
        "wall_s": round(wall, 1), "trial_epochs": sum(t["epochs_run"] for t in trials), "trials": len(trials),
        "stopped_early": sum(t["status"] == "stopped early" for t in trials),
        "best_val_acc": best["metrics"]["val_acc"], "best_test_acc": best["metrics"]["test_acc"],
        "best_lr": best["config"]["lr"], "best_epochs_run": next(t["epochs_run"] for t in trials if t["trial_id"] == best["trial_id"]),
        "per_trial": [{"lr": t["config"]["lr"], "epochs": t["epochs_run"], "status": t["status"],
                       "best_val": (t.get("best") or {}).get("val_acc"), "schedule": t.get("schedule")} for t in trials],
    }


ACCEPTANCE = {  # issue 21's lines, tune-lab against the peer of the same seed
    "wall no more": lambda t, p: t["wall_s"] <= p["wall_s"],
    "trial-epochs within 1.2x": lambda t, p: t["trial_epochs"] <= 1.2 * p["trial_epochs"],
    "best val at least": lambda t, p: t["best_val_acc"] >= p["best_val_acc"],
}


def acceptance(rows: list[dict[str, Any]], tune_lab_side: str = "tune-lab (promotion)") -> dict[str, dict[str, Any]]:
    """Per kind of peer: the seeds with both sides, how many meet each line and all three, and each figure's means
    and paired difference over those seeds (tune-lab minus peer, with the paired t-test's p). A later row of
    the same side and seed replaces an earlier one."""
    from scipy.stats import ttest_rel

    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        latest[(row["side"], row["seed"])] = row
    ours = {seed: row for (side, seed), row in latest.items() if side == tune_lab_side}
    verdicts: dict[str, dict[str, Any]] = {}
    for peer in sorted({side for side, _ in latest if not side.startswith("tune-lab")}):
        seeds = sorted(seed for (side, seed) in latest if side == peer and seed in ours)
        if not seeds:
            continue
        pairs = [(ours[s], latest[(peer, s)]) for s in seeds]
        met = {line: sum(check(t, p) for t, p in pairs) for line, check in ACCEPTANCE.items()}
        figures = {}
        for key in ("wall_s", "trial_epochs", "best_val_acc", "best_test_acc"):
            a, b = [t[key] for t, _ in pairs], [p[key] for _, p in pairs]
            p_value = float(ttest_rel(a, b).pvalue) if len(seeds) > 1 else float("nan")
            figures[key] = {"tune_lab": sum(a) / len(a), "peer": sum(b) / len(b),
                            "difference": (sum(a) - sum(b)) / len(a), "p": p_value}
        verdicts[peer] = {"seeds": seeds, "met": met,
                          "all three": sum(all(check(t, p) for check in ACCEPTANCE.values()) for t, p in pairs),
                          "figures": figures}
    return verdicts


def acceptance_text(verdicts: dict[str, dict[str, Any]]) -> str:
    lines = []
    for peer, v in verdicts.items():
        n = len(v["seeds"])
        lines.append(f"against {peer} ({n} seeds: {', '.join(map(str, v['seeds']))}): "
                     + ", ".join(f"{line} {count} of {n}" for line, count in v["met"].items()) + f", all three {v['all three']} of {n}")
        for key, f in v["figures"].items():
            scale, unit = (100, " points") if key.endswith("_acc") else (1, "")
            lines.append(f"  {key}: tune-lab {scale * f['tune_lab']:.2f}, peer {scale * f['peer']:.2f}, "
                         f"difference {scale * f['difference']:+.2f}{unit} (paired t-test p = {f['p']:.3f})")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| round | seed | side | wall | trial-epochs | stopped early | best val / test |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['round']} | {r['seed']} | {r['side']} | {r['wall_s']:.0f} s | {r['trial_epochs']} | "
                     f"{r['stopped_early']} of {r['trials']} | {100 * r['best_val_acc']:.2f} / {100 * r['best_test_acc']:.2f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TUNE_LAB_DATA"), help="real MNIST (default: $TUNE_LAB_DATA)")
    p.add_argument("--schedulers", nargs="+", default=["promotion"], choices=["promotion", "asha", "fifo"])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--first-round", type=int, default=1, help="number of the first round (even: tune-lab first)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="one round per seed (both sides seeded alike)")
    p.add_argument("--rungs", nargs="+", default=None, metavar="G:R",
                   help="promotion ASHA with grace period G and reduction factor R, one tune-lab run per pair")
    p.add_argument("--common-seed-peer", action="store_true",
                   help="also run the peer with every trial seeded alike, as tune-lab seeds its trials (benchmarks/optuna_peer.py)")
    p.add_argument("--plain-peer", action="store_true",
                   help="also run the peer at a constant lr without weight decay (optuna_peer.py --recipe plain)")
    p.add_argument("--out", default=None, help="JSON lines file (default: benchmarks/results/early-stopping-TIME.jsonl)")
    p.add_argument("--summarize", nargs="+", default=None, metavar="FILE",
                   help="run nothing: the acceptance over the seeds of these results files")
    args = p.parse_args(argv)
    if args.summarize:
        rows = [json.loads(line) for name in args.summarize for line in Path(name).read_text().splitlines() if line.strip()]
        print(acceptance_text(acceptance(rows)))
        return 0
    if not args.data_dir:
        p.error("--data-dir (or TUNE_LAB_DATA) is needed to run the searches")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"early-stopping-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tune-lab-bench21-") as storage:
        # The results root's MLflow store made beforehand, untimed: a user's searches share one,
        # and only the first search of a results root pays for creating its tables (~5-10 s here).
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=f"sqlite:///{storage}/mlflow.db").search_experiments()
        seeds = args.seeds or [args.seed] * args.rounds
        tune_lab_sides = ([("tune-lab", ("promotion", r)) for r in args.rungs] if args.rungs
                          else [("tune-lab", (s, None)) for s in args.schedulers])
        for round_, seed in enumerate(seeds, start=args.first_round):
            sides = ([("peer", None)] + [("peer", "common")] * args.common_seed_peer + [("peer", "plain")] * args.plain_peer
                     + tune_lab_sides)
            if round_ % 2 == 0:
                sides.reverse()
            for kind, variant in sides:
                row = (run_peer(args.data_dir, seed, variant) if kind == "peer"
                       else run_tune_lab(args.data_dir, seed, variant[0], storage, rungs=variant[1]))
                row |= {"round": round_, "seed": seed, "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}
                load = os.getloadavg()[0]
                rows.append(row)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps({k: v for k, v in row.items() if k != "per_trial"}), file=sys.stderr, flush=True)
    print(table(rows))
    print(f"\n(per-trial detail: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
