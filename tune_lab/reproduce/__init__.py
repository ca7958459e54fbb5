"""`tune-lab reproduce LAB`: a lab's plan -> its searches, in one Ray session and one results folder ->
one combined report.

One module per job, in the order a run goes through them:
- `plan`: read and check a plan file (search_spaces/reproduce/LAB.yaml or the user's own);
- `estimates`: `--dry-run`, the plan's searches, trials and epochs with an estimate of the time;
- `run`: run the plan's sections, or continue an interrupted reproduce (an interrupted section through
  `runner.resume_search`, as `tune-lab resume`);
- `report`: the combined report and each section's generated answer.
This module holds the command line (`add_parser`, `command`) and names what the CLI and the tests use.
Plans are read and checked before Ray or torch is imported.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from tune_lab.options import SearchOptions, add_repeats_flag, checked_repeats
from tune_lab.reproduce.estimates import dry_run, estimate
from tune_lab.reproduce.plan import Plan, Section, load_plan, plan_names, plan_path
from tune_lab.reproduce.report import answer, write_combined_report
from tune_lab.reproduce.run import default_experiment, run_plan, section_state

__all__ = ["Plan", "Section", "add_parser", "answer", "command", "default_experiment", "dry_run", "estimate",
           "load_plan", "plan_names", "plan_path", "run_plan", "section_state",
           "write_combined_report"]


REPRODUCE_FLAGS = ("data_dir", "storage", "tracking_uri", "experiment", "seed", "max_concurrent", "cpus_per_trial",
                   "gpus_per_trial", "address", "max_failures")


def add_parser(sub: Any) -> None:
    """`tune-lab reproduce LAB [--quick] [--dry-run] [options]`."""
    p = sub.add_parser("reproduce", help="a whole lab report: every search of its plan, one combined report")
    p.add_argument("plan", metavar="LAB", help=f"a lab's plan ({', '.join(plan_names())}, in search_spaces/reproduce/) "
                                               "or your own plan's .yaml path")
    p.add_argument("--quick", action="store_true", help="every search shrunk (subsets, epochs) by the plan's quick: blocks")
    p.add_argument("--dry-run", action="store_true", help="print the plan and an estimate of its time; run nothing")
    add_repeats_flag(p, help="seeds per configuration in every search")
    helps = {"experiment": "name of the reproduce's results folder (default: the newest unfinished "
                           "reproduce-LAB[-quick]-* there, to continue it, else a new reproduce-LAB[-quick]-TIME)",
             "storage": "results root the reproduce folder goes in (default: $TUNE_LAB_HOME, else ./tune-lab-results)"}
    SearchOptions.add_flags(p, only=REPRODUCE_FLAGS, helps=helps)


def command(args: argparse.Namespace) -> int:
    repeats = checked_repeats(args.repeats)
    plan = load_plan(args.plan, quick=args.quick)
    if args.dry_run:
        print(dry_run(plan, float(os.cpu_count() or 1), args.cpus_per_trial, args.max_concurrent, repeats))
        return 0
    opts = SearchOptions(**{name: getattr(args, name) for name in REPRODUCE_FLAGS})
    return run_plan(plan, opts, repeats)
