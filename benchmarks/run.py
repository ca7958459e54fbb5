"""`python -m benchmarks.run [--quick] [--only NAME ...]`: every benchmark of issue 9, one report.

Sections (see each module): mlp (lab 1 epoch: trainer vs the lab's loop vs a hand-written
loop), seeds (lab 1 epoch of 5 seeds: batched vs 5 separate single-seed epochs; on the GPU
when there is one, or `--device`), resnet (lab 2 trainer vs a plain loop), seq2seq (lab 3 trainer vs a plain loop, tokens/s), asha (ASHA vs FIFO trial-epochs and best
accuracy), ray (Ray Tune's cost per trial), cli (start-up of `tune-lab --help` / `list`), cores (the main
job's and a one-setting search's wall time and machine-wide CPU busy share, issue 32).
Results go to benchmarks/results/bench-TIME.json and .md (and `latest.*`), and the table
is printed. `--quick` shrinks every section to a smoke run (figures not meaningful).
"""
from __future__ import annotations

import os

# Before torch loads: with the default (active) OpenMP wait policy, 2 torch threads on a loaded
# 2-core machine were measured ~25x slower than 1 thread (threads spin for a core that is busy).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

from benchmarks.timing import describe_machine, load_average  # noqa: E402

SECTIONS = ("mlp", "seeds", "resnet", "seq2seq", "asha", "ray", "cli", "cores")
RESULTS_DIR = Path(__file__).parent / "results"
NOT_BENCHMARKED = {
    "gpu": "issue 9 item 6 (GPU throughput) needs a GPU machine: not run here",
}


def section_runners(args: argparse.Namespace) -> dict[str, Callable[[], dict[str, Any]]]:
    """Each section as a no-argument call; modules are imported only when their section runs."""
    quick, reps, threads = args.quick, args.reps, args.threads

    def mlp() -> dict[str, Any]:
        from benchmarks import mlp_epoch
        return mlp_epoch.run(quick, reps, threads, args.data_dir)

    def seeds() -> dict[str, Any]:
        from benchmarks import seeds_epoch
        return seeds_epoch.run(quick, reps, threads, args.data_dir, args.device)

    def resnet() -> dict[str, Any]:
        from benchmarks import resnet_throughput
        return resnet_throughput.run(quick, reps, threads, data_dir=args.data_dir)

    def seq2seq() -> dict[str, Any]:
        from benchmarks import seq2seq_throughput
        return seq2seq_throughput.run(quick, reps, threads, data_dir=args.data_dir)

    def asha() -> dict[str, Any]:
        from benchmarks import search
        return search.run_asha(quick, reps, args.data_dir)

    def ray() -> dict[str, Any]:
        from benchmarks import search
        return search.run_overhead(quick, reps)

    def cli() -> dict[str, Any]:
        from benchmarks import cli_startup
        return cli_startup.run(quick, reps)

    def cores() -> dict[str, Any]:
        from benchmarks import cores
        return cores.run(quick, reps, args.data_dir)

    return {"mlp": mlp, "seeds": seeds, "resnet": resnet, "seq2seq": seq2seq, "asha": asha, "ray": ray, "cli": cli,
            "cores": cores}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: machine, targets, then one table per section."""
    m = report["machine"]
    lines = [
        f"# tune-lab benchmarks ({report['started']}, {'quick' if report['quick'] else 'full'} run)", "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, torch {m['torch']} ({m['device']}), ray {m['ray']}, "
        f"mlflow {m['mlflow']}, Python {m['python']}; torch threads {report['threads']}; "
        f"OMP_WAIT_POLICY={report['omp_wait_policy']}.",
        f"Load average at start {m['load_average_start']}, at end {report['load_average_end']}. "
        f"Every comparison interleaved in this run, median of {report['reps']} repetitions.", "",
        "## Targets", "", "| target | measured | limit | met |", "|---|---|---|---|",
    ]
    for s in report["sections"]:
        for t in s.get("targets", []):
            lines.append(f"| {t['what']} | {t['value']:.3f} | {t['op']} {t['limit']:g} | {'yes' if t['met'] else '**no**'} |")
    for s in report["sections"]:
        lines += ["", f"## {s['name']}: {s.get('title', '')}", ""]
        if "error" in s:
            lines += [f"Failed: `{s['error']}`"]
            continue
        lines.append("Settings: " + ", ".join(f"{k} {_fmt(v)}" for k, v in s["settings"].items()) + ".")
        extra = [k for k in s["cases"][0] if k not in ("case", "median_s", "reps_s")]
        lines += ["", "| " + " | ".join(["case", "median s", *extra]) + " |", "|---" * (2 + len(extra)) + "|"]
        for row in s["cases"]:
            cells = [row["case"], f"{row['median_s']:.3f}", *(_fmt(row[k]) for k in extra)]
            lines.append("| " + " | ".join(cells) + " |")
        if s.get("ratios"):
            lines += ["", "Ratios: " + ", ".join(f"{k} {_fmt(v)}" for k, v in s["ratios"].items()) + "."]
        lines += [f"- {note}" for note in s.get("notes", [])]
    lines += ["", "## Not benchmarked", ""] + [f"- {k}: {v}" for k, v in report["not_benchmarked"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings and 2 repetitions: checks the harness, not the figures")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="NAME", help=f"sections to run ({', '.join(SECTIONS)})")
    parser.add_argument("--reps", type=int, help="repetitions of every case (default 5; 2 with --quick)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the epoch benchmarks (default 1: what a 1-CPU Ray trial uses)")
    parser.add_argument("--data-dir", help="dataset root (default $TUNE_LAB_DATA)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="device of the seeds section (default: the GPU when torch sees one, else the CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON and Markdown results")
    args = parser.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 5)

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report: dict[str, Any] = {
        "started": started, "quick": args.quick, "reps": args.reps, "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "machine": describe_machine(), "sections": [], "not_benchmarked": NOT_BENCHMARKED,
    }
    runners = section_runners(args)
    for name in args.only or SECTIONS:
        print(f"benchmarks: {name} ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        try:
            result = runners[name]()
        except Exception as exc:  # one broken section must not lose the others' figures
            traceback.print_exc()
            result = {"name": name, "error": f"{exc.__class__.__name__}: {exc}", "targets": []}
        result["section_s"] = round(time.perf_counter() - began, 1)
        report["sections"].append(result)
    report["load_average_end"] = load_average()

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else f"bench-{started.replace(':', '').replace('-', '')}"
    markdown = to_markdown(report)
    for path in (args.out / f"{stem}.json", args.out / "latest.json"):
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    for path in (args.out / f"{stem}.md", args.out / "latest.md"):
        path.write_text(markdown)
    print(markdown)
    print(f"benchmarks: results in {args.out / stem}.json and .md", file=sys.stderr)
    return 1 if any("error" in s for s in report["sections"]) else 0


if __name__ == "__main__":
    sys.exit(main())
