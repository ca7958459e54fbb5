"""The `tune-lab` command. Torch, Ray and MLflow are imported only by the commands that need
them, so `--help`, `list` and a bad search file answer in well under a second."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Sequence

import yaml

from labspec.registry import LABS, lab_names
from tune_lab.options import SearchOptions, add_repeats_flag, positive_int
from tune_lab.usage import UsageError, check_port_free

if TYPE_CHECKING:
    from reports.record import Summary

EXIT_TRIALS_FAILED = 1  # the search ran, but some trials errored (see the table / summary.json)
EXIT_USAGE = 2  # bad input: nothing was run
EXIT_INTERRUPTED = 130  # Ctrl-C: what ran is kept; `tune-lab resume` continues
EXIT_NODE_LOST = 3  # a Ray node died under the search: what ran is kept; `tune-lab resume` continues
MAX_GENERATED = 4096  # images in one `tune-lab generate` grid


def parse_set(text: str) -> tuple[str, Any]:
    """KEY=VALUE with YAML scalars (2, 0.5, 1e-3, true, adam)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set epochs=2")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        for convert in (int, float):
            try:
                return key.strip(), convert(value)
            except ValueError:
                pass
    return key.strip(), value


def add_search_options(p: argparse.ArgumentParser, datasets: Sequence[str]) -> None:
    p.add_argument("--search", required=True, metavar="NAME|FILE.yaml",
                   help="a search in search_spaces/LAB/ (see `tune-lab list`) or your own YAML file")
    # Several pairs after one --set, as users type them (and nanoGPT-style tools accept); --set may
    # also be repeated. The lab options have no positional argument a pair could be mistaken for.
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", type=parse_set, default=[],
                   metavar="KEY=VALUE",
                   help="override fixed values of the search, e.g. --set epochs=2 lr=0.01 (repeatable)")
    add_repeats_flag(p, help="seeds per configuration (--seed, --seed+1, ...), trained in one trial; ASHA and Optuna "
                        "decide on their mean and the table adds mean +- std, a 95%% interval and a verdict "
                        "against the best (default: the search file's repeats, else 1)")
    SearchOptions.add_flags(p, datasets)
    p.add_argument("--dry-run", action="store_true",
                   help="print the Ray Tune call the search makes (param space, scheduler and rungs, resources per "
                        "trial) and start nothing")


def add_store_options(p: argparse.ArgumentParser, tracking: bool = True) -> None:
    """Where finished searches are found: the results root, and (where it matters) the MLflow store."""
    p.add_argument("--storage", help="results root (default: $TUNE_LAB_HOME, else ./tune-lab-results)")
    if tracking:
        p.add_argument("--tracking-uri", help=SearchOptions.tracking_uri_help)


def add_job_commands(sub: Any) -> None:
    """submit, jobs, logs, stop: searches as Ray Jobs on a cluster (tune_lab.jobs)."""
    where = "the cluster's dashboard, e.g. http://127.0.0.1:8265 (default: $RAY_API_SERVER_ADDRESS, else $RAY_ADDRESS)"
    submit = sub.add_parser("submit", help="submit a search to a Ray cluster as a Ray Job, and return at once")
    submit.add_argument("--address", help=where)
    submit.add_argument("--wait", action="store_true", help="follow the job's log to its end; exit with the search's exit code")
    submit.add_argument("lab", metavar="LAB", choices=lab_names(), help="the lab, then --search and any search option")
    submit.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    jobs = sub.add_parser("jobs", help="tune-lab's jobs on a Ray cluster")
    jobs.add_argument("--address", help=where)
    jobs.add_argument("--owner", metavar="NAME", help="only NAME's jobs (whom `tune-lab submit` named: "
                      "$TUNE_LAB_OWNER, else the login)")
    logs = sub.add_parser("logs", help="the log of a submitted search")
    logs.add_argument("job", metavar="JOB")
    logs.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    logs.add_argument("--address", help=where)
    stop = sub.add_parser("stop", help="stop a submitted search")
    stop.add_argument("job", metavar="JOB")
    stop.add_argument("--address", help=where)


def add_reproduce(sub: Any) -> None:
    """reproduce: a lab's whole report from its plan (tune_lab.reproduce, which declares the flags)."""
    from tune_lab.reproduce import add_parser

    add_parser(sub)


class Parser(argparse.ArgumentParser):
    """argparse with its errors in one line and where to look (a lab's usage block alone is 12 lines)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"tune-lab: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tune-lab",
        description="Hyperparameter searches over classic PyTorch course labs (Ray Tune + MLflow).",
        epilog="Example: tune-lab mlp --search optimizer",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("list", help="labs, their searches and their datasets")
    report = sub.add_parser("report", help="(re)build the report of a finished search")
    report.add_argument("target", metavar="EXPERIMENT_OR_DIR", help="an experiment name under the results root, or its folder")
    add_store_options(report)
    report.add_argument("--data-dir", help="dataset root, for the lab's own figures")
    resume = sub.add_parser("resume", help="continue an interrupted search where it stopped")
    resume.add_argument("target", metavar="EXPERIMENT_OR_DIR", help="an experiment name under the results root, or its folder")
    add_store_options(resume, tracking=False)
    resume.add_argument("--address", help="Ray cluster to join (default: the one the search used)")
    ui = sub.add_parser("ui", help="the MLflow UI on the local store, bound to 127.0.0.1")
    add_store_options(ui)
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    tensorboard = sub.add_parser("tensorboard", help="the trials of a search in TensorBoard, bound to 127.0.0.1")
    tensorboard.add_argument("target", metavar="EXPERIMENT_OR_DIR", help="an experiment name under the results root, or its folder")
    add_store_options(tensorboard, tracking=False)
    tensorboard.add_argument("--port", type=int, default=6006, help="port to listen on (default 6006)")
    translate = sub.add_parser("translate", help="translate French sentences with the best checkpoint of a seq2seq search")
    translate.add_argument("sentences", nargs="+", metavar="SENTENCE", help='French text, e.g. "je suis tres fatigue ."')
    translate.add_argument("--experiment", help="the search to use (default: the newest seq2seq search)")
    add_store_options(translate, tracking=False)
    generate = sub.add_parser("generate", help="images from the best checkpoint of a generative lab, as a PNG grid")
    generate.add_argument("lab", metavar="LAB", choices=lab_names(),
                          help="a lab that can generate: " + ", ".join(n for n in lab_names() if LABS[n].sampler))
    generate.add_argument("--n", type=positive_int, default=64, help="how many images (default 64)")
    generate.add_argument("--out", required=True, metavar="FILE.png", help="the PNG grid to write")
    generate.add_argument("--digit", type=int, metavar="D", help="the class to draw, 0-9 (conditional labs only)")
    generate.add_argument("--experiment", help="the search to take the best checkpoint of (default: the latest of LAB)")
    add_store_options(generate, tracking=False)
    generate.add_argument("--seed", type=int, default=0, help="seed of the noise the images are drawn from")
    add_job_commands(sub)
    add_reproduce(sub)
    for name in lab_names():
        spec = LABS[name]
        add_search_options(sub.add_parser(name, help=f"run a search of lab {name}: {spec.description}"), spec.datasets)
    for p in (parser, *sub.choices.values()):
        add_labs_option(p)
    return parser


def add_labs_option(p: argparse.ArgumentParser) -> None:
    """--labs, before or after the command. main() imports its values before the parser is built (the lab
    names are subcommands); here it is only accepted. SUPPRESS: a subcommand's default would replace the value."""
    p.add_argument("--labs", action="append", default=argparse.SUPPRESS, metavar="FILE.py|MODULE",
                   help="import a lab of your own first: its file, or its module's name (repeatable; "
                        "also $TUNE_LAB_LABS, a list like PATH's)")


def cmd_list() -> int:
    from tune_lab.spaces import available_searches

    for name in lab_names():
        spec = LABS[name]
        print(f"{name}: {spec.description}")
        print(f"  datasets: {', '.join(spec.datasets)} (default {spec.default_dataset})")
        for search, description in available_searches(name).items():
            print(f"  --search {search:<12} {description}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from reports.source import load_record
    from reports.table import format_best, format_table
    from tune_lab import paths
    from tune_lab.report import ReportWouldLoseSections, log_to_mlflow, write_report

    root = paths.results_root(args.storage)
    record = load_record(args.target, root, args.tracking_uri)
    folder = record.get("storage") or str(Path(root) / record["experiment"])
    try:
        report_dir = write_report(record, folder, args.data_dir)
    except ReportWouldLoseSections as exc:
        raise UsageError(str(exc)) from None
    if record.get("source") == "mlflow":
        log_to_mlflow(record, report_dir, with_checkpoint=False)
    print(format_table(record))
    print(format_best(record))
    print(f"\nReport (read from {record.get('source')}): {report_dir}/report.html")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from tune_lab.api import resumable_folder
    from tune_lab.results import complete_summary

    folder = resumable_folder(args.target, args.storage)
    done = complete_summary(folder)  # none, or cut off by a kill: Ray's state decides
    if done is not None:  # Ray would rerun nothing and the report would be rewritten for nothing
        print(f"tune-lab: {folder}: the search is already complete ({len(done['trials'])} trials); nothing to resume. "
              f"Report: {folder / 'report' / 'report.html'} (rebuild it with `tune-lab report {folder}`)")
        return 0
    from tune_lab.runner import resume_search

    return _exit_code(resume_search(folder, args.address))


def _exit_code(summary: Summary) -> int:
    from reports.record import Status

    if summary.get("node_lost"):
        return EXIT_NODE_LOST
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED
    failed = [t for t in summary["trials"] if t["status"] == Status.ERRORED]
    if failed:
        print(f"tune-lab: {len(failed)} of {len(summary['trials'])} trials failed (exit code {EXIT_TRIALS_FAILED})", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import os

    from tune_lab import paths

    check_port_free(args.host, args.port)
    uri = paths.tracking_uri(args.tracking_uri, paths.results_root(args.storage))
    print(f"MLflow UI for {uri}: http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    # Browsing needs no background job runner (8 extra processes that outlive a killed parent).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    os.execve(sys.executable, command, env)  # become the UI: signals reach it directly; no shell


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from tune_lab.tensorboard import serve

    serve(args.target, args.storage, args.port)  # becomes TensorBoard: returns only by raising
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from trainables.translation_data import normalize

    for number, sentence in enumerate(args.sentences, start=1):
        if not normalize(sentence):  # nothing to translate: "", "   ", or symbols only
            raise UsageError(f"translate: sentence {number} ({sentence!r}) has no French word to translate; "
                             f'give text, e.g. tune-lab translate "je suis fatigue ."')
    from trainables.seq2seq import Translator
    from tune_lab import paths
    from tune_lab.checkpoints import best_checkpoint

    best = best_checkpoint("seq2seq", str(paths.results_root(args.storage)), args.experiment)
    translator = Translator(best.folder)
    for sentence in args.sentences:
        unknown = translator.unknown_words(sentence)
        if unknown:
            print(f"tune-lab: never seen in training, read as <unk>: {' '.join(unknown)}", file=sys.stderr)
        print(translator.translate([sentence])[0])
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    spec = LABS[args.lab]
    if spec.sampler is None:
        can = ", ".join(n for n in lab_names() if LABS[n].sampler)
        raise UsageError(f"generate {args.lab}: lab {args.lab} has no model to sample images from; "
                         f"labs that can generate: {can}")
    if args.digit is not None and not 0 <= args.digit <= 9:
        raise UsageError(f"--digit {args.digit}: expected a digit 0-9")
    if args.digit is not None and spec.sampler != "conditional":
        raise UsageError(f"--digit {args.digit}: lab {args.lab} is unconditional (it decodes random noise); leave --digit out")
    if args.n > MAX_GENERATED:
        raise UsageError(f"--n {args.n}: at most {MAX_GENERATED} images in one grid")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {args.out}: expected a file name ending in .png")
    import math

    from torchvision.utils import save_image

    from tune_lab import paths
    from tune_lab.checkpoints import best_checkpoint

    best = best_checkpoint(args.lab, paths.results_root(args.storage), args.experiment)
    images = spec.load().sample_images(str(best.folder), args.n, digit=args.digit, seed=args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    every_digit = spec.sampler == "conditional" and args.digit is None  # n of each digit, one row per digit
    nrow = args.n if every_digit else math.ceil(math.sqrt(args.n))
    save_image(images, str(out), nrow=nrow, padding=2, pad_value=1.0)
    which = f" of digit {args.digit}" if args.digit is not None else " of each digit 0-9 (a row each)" if every_digit else ""
    print(f"{args.n} images{which} from the best {args.lab} checkpoint of {best.experiment} "
          f"(trial {best.trial_id}): {out.resolve()}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from tune_lab.api import checked_search
    from tune_lab.runner import run_search  # Ray itself is imported only by run_search

    search = checked_search(args.command, args.search, dict(args.overrides), args.repeats, args.num_samples)
    opts = SearchOptions.from_args(args)
    if args.dry_run:
        from tune_lab import plan

        if opts.address:
            print(f"# planned on this machine's resources: --dry-run does not join {opts.address}")
        print(plan.make(search, dataclasses.replace(opts, address=None), plan.this_machine()).describe())
        return 0
    return _exit_code(run_search(search, opts))


def cmd_submit(args: argparse.Namespace) -> int:
    from tune_lab import jobs
    from tune_lab.spaces import load_search

    search_args = build_parser().parse_args([args.lab, *args.options])  # refused here, not on the cluster
    if search_args.address:
        raise UsageError("submit: --address after LAB: a submitted search joins the cluster it is sent to; "
                         "give the dashboard's address before LAB")
    load_search(search_args.search, args.lab, dict(search_args.overrides))
    options = _without_search(list(args.options))
    client, job_id = jobs.submit(args.address, args.lab, search_args.search, options, search_args.experiment)
    at = f" --address {args.address}" if args.address else ""
    print(f"submitted {job_id}\n  follow: tune-lab logs {job_id} --follow{at}\n  list:   tune-lab jobs{at}\n"
          f"  stop:   tune-lab stop {job_id}{at}", flush=True)
    if not args.wait:
        return 0
    for chunk in jobs.follow(client, job_id):
        print(chunk, end="", flush=True)
    return jobs.exit_code(jobs.job_info(client, job_id))


def _without_search(options: list[str]) -> list[str]:
    """The search options but --search (the job gets the staged file's name instead)."""
    out, skip = [], False
    for word in options:
        if skip or word.startswith("--search="):
            skip = False
            continue
        skip = word == "--search"
        if not skip:
            out.append(word)
    return out


def cmd_reproduce(args: argparse.Namespace) -> int:
    from tune_lab.reproduce import command

    return command(args)


def cmd_jobs(args: argparse.Namespace) -> int:
    import dataclasses

    from tabulate import tabulate

    from tune_lab import jobs

    rows = [dataclasses.astuple(row) for row in jobs.tune_lab_jobs(jobs.connect(args.address))
            if args.owner is None or row.owner == args.owner]
    print(tabulate(rows, headers=list(jobs.JOB_COLUMNS)) if rows else
          "no tune-lab jobs" + (f" of {args.owner}" if args.owner is not None else ""))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from tune_lab import jobs

    client = jobs.connect(args.address)
    jobs.job_info(client, args.job)
    for chunk in jobs.follow(client, args.job) if args.follow else [client.get_job_logs(args.job)]:
        print(chunk, end="", flush=True)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from tune_lab import jobs

    client = jobs.connect(args.address)
    status = str(jobs.job_info(client, args.job).status.value)
    if client.stop_job(args.job):
        print(f"stopping {args.job}")
    else:
        print(f"{args.job} had already ended ({status})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from labspec.errors import TuneLabError
    from tune_lab import user_labs

    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # the labs of one's own (--labs, $TUNE_LAB_LABS, entry points) before the parser: they are its subcommands
        user_labs.load_command_line(argv)
    except TuneLabError as exc:
        print(f"tune-lab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = build_parser().parse_args(argv)

    try:
        if args.command in ("report", "resume"):  # a search of a lab of one's own: its lab again, from where it came
            user_labs.ensure_lab_of(args.target, args.storage, args.command)
        user_labs.check_if_own(args.lab if args.command in ("submit", "generate") else args.command)
        commands = {"list": lambda _: cmd_list(), "report": cmd_report, "ui": cmd_ui, "resume": cmd_resume,
                    "translate": cmd_translate, "generate": cmd_generate, "tensorboard": cmd_tensorboard,
                    "submit": cmd_submit, "jobs": cmd_jobs, "logs": cmd_logs, "stop": cmd_stop,
                    "reproduce": cmd_reproduce}
        return commands.get(args.command, cmd_search)(args)  # any other command is a lab's search
    except TuneLabError as exc:  # UsageError, SearchSpaceError, DatasetUnavailable, SearchNotFound ...
        print(f"tune-lab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tune-lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """The `tune-lab` command: `main()`, then the process ends without Python's module teardown.

    When a command returns, its files are closed, Ray is stopped and its MLflow runs are ended;
    what an ordinary exit still does is free the modules of torch, Ray, MLflow and matplotlib one
    by one, ~1.4 s here after every search (docs/benchmarks.md, "A search's own cost"). The exit
    handlers (Ray's, logging's, weakref finalizers, multiprocessing's) still run, through the
    interpreter's own `atexit._run_exitfuncs`; while another non-daemon thread is alive, or on an
    exception, the ordinary exit happens instead. Tests call `main()`, which never exits.
    """
    import atexit
    import os
    import threading

    code = main()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
