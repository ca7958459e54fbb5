"""The options of one search, declared once: the command line's flags are made from these fields,
and the runner reads the same dataclass (also what `tune-lab resume` reads back from a search's folder)."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from tune_lab.spaces import SCHEDULERS


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


PLAIN_NAME = "letters, digits, '.', '-' and '_', not starting with '.' (it names a folder in the results root)"


def plain_name(text: str) -> str:
    """--experiment: a name, never a path. On a shared head every student's results live under one root:
    `../escape` would write outside it, `/abs/path` somewhere else entirely."""
    if not text or text.startswith(".") or any(not (c.isalnum() or c in "._-") for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a plain name: use {PLAIN_NAME}")
    return text


def keep_checkpoints_value(text: str) -> str | int:
    """--keep-checkpoints: `all`, `best`, or N (the best N trials by the searched metric)."""
    if text in ("all", "best"):
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (give all, best or a number of trials)") from None


def add_repeats_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """--repeats N, for a search and a reproduce alike: taken as text and checked by `checked_repeats`, so a bad
    value gets the one line tune_lab.search(repeats=...) gets too, not argparse's own words."""
    parser.add_argument("--repeats", metavar="N", help=help)


def checked_repeats(value: int | str | None) -> int | None:
    """--repeats' text or repeats='s number as the seeds per configuration: an integer from 1 to
    MAX_REPEATS (the search file's own rule, spaces.valid_repeats), else UsageError; None stays None."""
    from tune_lab.spaces import REPEATS_ALLOWED, valid_repeats
    from tune_lab.usage import UsageError

    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            pass
    if not valid_repeats(value):
        raise UsageError(f"--repeats {value}: {REPEATS_ALLOWED}")
    return value


def flag(default: Any = None, help: str = "", **argparse_args: Any) -> Any:
    """A field that is also the command-line flag --NAME (underscores as dashes)."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_args})


@dataclass
class SearchOptions:
    """Everything the command line can say about how one search runs (what it searches is its file)."""

    dataset: str | None = flag()  # choices and help: the lab's datasets (add_flags)
    data_dir: str | None = flag(help="dataset root (default: $TUNE_LAB_DATA, else ~/.cache/tune-lab/data)")
    subset: int | None = flag(type=positive_int, metavar="N", help="use only N training samples (smoke runs)")
    num_samples: int | None = flag(type=positive_int, help="repeats of the grid, or trials of random/optuna")
    max_concurrent: int | None = flag(type=positive_int, help="trials at once (default: as many as resources allow)")
    cpus_per_trial: float | None = flag(type=non_negative_float, help="default 1")
    gpus_per_trial: float | None = flag(type=non_negative_float,
                                        help="fractions share a GPU (default: the lab's share when GPUs exist, else 0)")
    address: str | None = flag(help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT")
    storage: str | None = flag(help="results root, local path or URI (default: $TUNE_LAB_HOME, else ./tune-lab-results)")
    tracking_uri_help = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else SQLite in the results root)"
    tracking_uri: str | None = flag(help=tracking_uri_help)
    experiment: str | None = flag(type=plain_name, help="name of this search's results folder and MLflow run "
                                  "(default: LAB-SEARCH-TIME)")
    seed: int | None = flag(type=int, help="seed of every trial and of the search algorithm")
    scheduler: str | None = flag(choices=list(SCHEDULERS), help="override the search file's scheduler "
                                 "(asha: Ray's stopping ASHA; promotion: trials wait at rungs)")
    deterministic: bool = flag(False, action="store_true",
                               help="deterministic GPU kernels, no TF32: the same numbers twice on a GPU too, "
                               "at some speed (the CPU is deterministic already)")
    max_failures: int = flag(0, type=int, metavar="N", help="retries of a failed trial from its checkpoint")
    keep_checkpoints: str | int = flag("best", type=keep_checkpoints_value, metavar="all|best|N",
                                       help="once the search has finished, keep the checkpoints of all trials, "
                                       "of the best one (default), or of the best N by the searched metric")

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser, datasets: Sequence[str] = (), only: Sequence[str] | None = None,
                  helps: dict[str, str] | None = None) -> None:
        """The fields' flags (`only` some of them, a few with other `helps`, as reproduce has)."""
        for field in dataclasses.fields(cls):
            if only is not None and field.name not in only:
                continue
            extra = {"choices": list(datasets), "help": f"default: {datasets[0]}"} if field.name == "dataset" else {}
            extra.update({"help": helps[field.name]} if field.name in (helps or {}) else {})
            parser.add_argument("--" + field.name.replace("_", "-"), default=field.default, **{**field.metadata, **extra})

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "SearchOptions":
        return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})
