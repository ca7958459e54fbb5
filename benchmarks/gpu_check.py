"""`python -m benchmarks.gpu_check [--out FILE.md] [--quick]`: what to run first on a lent GPU (issue 35, item 9).

A GPU is lent for minutes at a time, so one command must tell, before any figure is trusted,
whether the lent machine runs tune-lab at all: which driver and wheel it has, whether every
lab's checkpoints survive a save and a resume on `cuda:0`, whether the GPU benchmarks run, and
whether real searches (promotion ASHA with `--repeats 2`, the main job at 0.25 GPU per trial,
table2, a one-GPU resnet search) finish with their trials on the GPU. It writes one Markdown
table (step, result, figure, seconds, note) to `--out` and prints it; the exit status is 0
when every step that ran passed.

Without CUDA it runs its CPU form: the round trips (exact there: equal metrics, bit for bit)
and one tiny search on the CPU; the GPU-only steps get a row "skipped: no CUDA". `--quick`
shrinks the searches and benchmarks (CPU form: ~2 minutes on 2 cores).

Data: the round trips always train on tiny synthetic data written to a temporary folder (a
save / resume check needs no real images, and a lent machine has none unless they travel with
it). The searches and the seeds benchmark read MNIST from `--data-dir` (default
$TUNE_LAB_DATA) when it is there, else the same tiny data, and the note says which.
"""
from __future__ import annotations

import os

# Before torch loads (as benchmarks/run.py): spinning OpenMP threads on a busy 2-core machine cost ~25x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from labspec.config import seed_list  # noqa: E402
from trainables.data import TORCHVISION_FOLDERS  # noqa: E402
from trainables.loop import CHECKPOINT_FILE, resume_group, set_deterministic  # noqa: E402
from labspec.registry import LABS, LabSpec, lab_names  # noqa: E402
from trainables.seeds import SeedGroup  # noqa: E402

DEFAULT_OUT = Path(__file__).parent / "results" / "gpu_check.md"
USER_CUBLAS_CONFIG = os.environ.get("CUBLAS_WORKSPACE_CONFIG")  # before set_deterministic may set it
ROUND_TRIP_REPEATS = (1, 2)  # run_trial saves `state` alone at 1 and `seed_states` beside it at 2+
MEMORY_REPEATS = (1, 5)
TINY_SUBSET = 200  # training samples per lab in the round trips
# Settings that keep a CPU epoch to seconds (tests/test_lab_contract.py uses them too); on a GPU only
# the quality sample counts shrink, so the labs' own models (ResNet18, hidden 256 ...) run there.
SMALL = {
    "resnet": {"model": "lenet"},
    "seq2seq": {"hidden_size": 16},
    "wgan": {"quality_samples": 10},
    "cgan": {"quality_samples": 10, "width": 4},
    "vae": {"quality_samples": 10, "prior_components": 2},
}
KEPT_ON_GPU = ("quality_samples",)
FAILED, OK = "FAILED", "ok"


class Skipped(Exception):
    """A step that cannot run here (no CUDA): its row says why, and it does not fail the check."""


@dataclass
class Row:
    step: str
    result: str
    figure: str = ""
    seconds: float | None = None
    note: str = ""


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@dataclass
class Table:
    """The rows so far, rewritten to `out` after each one: a check cut off by the device tool's
    time limit still leaves the rows it finished (and files under its $OUT come back)."""

    title: str
    out: Path
    rows: list[Row] = field(default_factory=list)
    finished: bool = False

    def add(self, row: Row) -> None:
        self.rows.append(row)
        self.write()

    def markdown(self) -> str:
        minutes = sum(r.seconds or 0 for r in self.rows) / 60
        lines = [f"{self.title}, {minutes:.1f} min{'' if self.finished else ' (cut off: not finished)'}", "",
                 "| step | result | figure | seconds | note |", "|---|---|---|---|---|"]
        for r in self.rows:
            seconds = "" if r.seconds is None else f"{r.seconds:.1f}"
            lines.append("| " + " | ".join(_cell(c) for c in (r.step, r.result, r.figure, seconds, r.note)) + " |")
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(self.markdown())

    def failed(self) -> list[str]:
        return [r.step for r in self.rows if r.result == FAILED]


@dataclass
class Context:
    """What every step needs: where it runs, how small, and the data and scratch folders."""

    device: torch.device
    why_no_cuda: str | None  # None where the GPU form runs
    quick: bool
    tiny_root: Path  # tiny synthetic MNIST + eng-fra.txt, written by `write_tiny_data`
    data_root: Path  # the MNIST root found, else tiny_root
    mnist_found: bool  # MNIST under --data-dir / $TUNE_LAB_DATA
    work: Path

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def need_cuda(self) -> None:
        if not self.on_gpu:
            raise Skipped(f"skipped: {self.why_no_cuda}")

    def data_note(self) -> str:
        return f"MNIST from {self.data_root}" if self.mnist_found else "tiny synthetic data (no MNIST under --data-dir / $TUNE_LAB_DATA)"


def run_step(table: Table, step: str, work: Callable[[], tuple[str, str] | tuple[str, str, str]]) -> Row:
    """Run one step, timed; `work` returns (figure, note) or (result, figure, note).

    A step that raises fails its row and only its row: the rest of the check still runs, so one
    broken lab does not hide what the others show on a machine that is lent for minutes.
    """
    start = time.perf_counter()
    try:
        out = work()
        result, figure, note = out if len(out) == 3 else (OK, *out)
    except Skipped as skip:
        result, figure, note = str(skip), "", ""
    except Exception as exc:  # noqa: BLE001: reported in the row, traceback on stderr
        traceback.print_exc()
        result, figure, note = FAILED, "", f"{type(exc).__name__}: {exc}"[:300]
    row = Row(step, result, figure, round(time.perf_counter() - start, 1), note)
    table.add(row)
    print(f"gpu_check: {step}: {result} {figure} ({row.seconds} s)", file=sys.stderr, flush=True)
    return row


# --------------------------------------------------------------------------- environment
def nvidia_smi() -> str | None:
    """The driver version and GPU names nvidia-smi reports, or None where there is no nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    return out.stdout.strip().replace("\n", "; ") or f"nvidia-smi exit {out.returncode}: {out.stderr.strip()[:200]}"


def environment(ctx: Context) -> tuple[str, str]:
    """The wheel and the driver: the first thing to compare when a figure looks wrong."""
    figure = f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available {torch.cuda.is_available()}"
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    smi = nvidia_smi()
    note = f"device {name}; nvidia-smi: {smi or 'not found'}; {os.cpu_count()} CPUs; form: {'GPU' if ctx.on_gpu else 'CPU'}"
    return figure, note


# --------------------------------------------------------------------------- tiny data
def _write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format: magic (0x08 = ubyte, ndim), big-endian sizes, the bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_tiny_data(root: Path) -> Path:
    """A data root every shipped lab loads: 1,200 / 300 noise MNIST images and a 96-line eng-fra.txt.

    The round trips check that a resumed run continues exactly, which needs data of the right
    shapes only, not real images; and a lent GPU machine has no datasets of its own.
    """
    raw = root / TORCHVISION_FOLDERS["mnist"] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 1200), ("t10k", 300)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, size=n))
    subjects = [("i am", "je suis"), ("you are", "tu es"), ("he is", "il est"), ("she is", "elle est"),
                ("we are", "nous sommes"), ("they are", "ils sont")]
    adjectives = [("tall", "grand"), ("tired", "fatigue"), ("happy", "content"), ("sick", "malade"),
                  ("ready", "pret"), ("rich", "riche"), ("busy", "occupe"), ("free", "libre")]
    lines = [f"{en.capitalize()} {adj_en}.\t{fr.capitalize()} {adj_fr}." for en, fr in subjects for adj_en, adj_fr in adjectives]
    (root / "eng-fra.txt").write_text("\n".join(lines * 2) + "\n", encoding="utf-8")
    return root


def has_mnist(root: Path | None) -> bool:
    return root is not None and (root / TORCHVISION_FOLDERS["mnist"] / "raw" / "train-images-idx3-ubyte").is_file()


@contextlib.contextmanager
def scratch_cache(folder: Path) -> Iterator[None]:
    """$TUNE_LAB_CACHE pointed at `folder`: the generative labs' reference classifier of the tiny
    data is trained there, not into the user's cache, where it would only take room."""
    before = os.environ.get("TUNE_LAB_CACHE")
    os.environ["TUNE_LAB_CACHE"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TUNE_LAB_CACHE", None)
        else:
            os.environ["TUNE_LAB_CACHE"] = before


# --------------------------------------------------------------------------- round trips and memory
def tiny_lab_data(spec: LabSpec, root: Path) -> Any:
    """The lab's own `load_data` on the tiny root (as tests/test_lab_contract.py picks: MNIST where the lab takes it)."""
    dataset = "mnist" if "mnist" in spec.datasets else spec.default_dataset
    data_dir = str(root) if dataset in ("mnist", "eng_fra") else None
    return spec.load().load_data(dataset, data_dir, subset=TINY_SUBSET)


def lab_config(spec: LabSpec, device: torch.device) -> Any:
    """Two epochs (a schedule's whole length), batches of 64 (several per epoch: the batch order
    matters), the CPU's small settings or, on a GPU, the lab's own models."""
    small = SMALL.get(spec.name, {})
    if device.type == "cuda":
        small = {k: v for k, v in small.items() if k in KEPT_ON_GPU}
    return spec.config(**{"epochs": 2, "batch_size": 64, **small})


def one_epoch(group: SeedGroup) -> dict[int, dict[str, float]]:
    """What run_trial gets of an epoch: each seed's training and evaluation metrics."""
    train, evaluation = group.train_epoch(), group.evaluate()
    return {seed: {k: v for k, v in {**train[seed], **evaluation[seed]}.items() if k != "samples"} for seed in train}


def max_abs_difference(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> float:
    """The largest |a - b| over seeds and metrics; inf where they disagree on which exist (NaN counts as equal to NaN)."""
    if a.keys() != b.keys() or any(a[s].keys() != b[s].keys() for s in a):
        return math.inf
    worst = 0.0
    for seed in a:
        for key, x in a[seed].items():
            y = b[seed][key]
            if not (math.isnan(x) and math.isnan(y)):
                worst = max(worst, abs(x - y))
    return worst


def round_trip(ctx: Context, spec: LabSpec, data: Any, repeats: int) -> tuple[str, str, str]:
    """Epoch 1, a checkpoint as run_trial writes it, epoch 2; then a fresh group restored from the
    file through run_trial's own load path (`resume_group`) trains epoch 2 again: its metrics must
    be the first's.

    On the CPU they must be equal bit for bit. On a GPU the round trips run with deterministic
    kernels (`set_deterministic`, as `--deterministic`), so that a difference points at the
    checkpoint rather than at atomics; ops without a deterministic kernel only warn, so the row
    reports the largest difference and passes while it is finite.
    """
    cfg = lab_config(spec, ctx.device)
    seeds = seed_list(cfg.seed, repeats)
    trainer = spec.load().Trainer
    set_deterministic(ctx.on_gpu)
    try:
        kept = trainer.seed_group(cfg, data, ctx.device, seeds)
        first = one_epoch(kept)
        mean = {key: sum(m[key] for m in first.values()) / len(first) for key in next(iter(first.values()))}
        states = kept.state_dicts()
        saved = {"state": states[kept.seeds[0]], "epoch": 1, "metrics": mean, "best": mean[spec.metric]}
        if repeats > 1:  # as run_trial: `seed_states` only for a repeated trial
            saved["seed_states"] = states
        folder = ctx.work / f"{spec.name}-r{repeats}"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(saved, folder / CHECKPOINT_FILE)
        uninterrupted = one_epoch(kept)
        del kept, states, saved

        resumed = trainer.seed_group(cfg, data, ctx.device, seeds)
        next_epoch, _ = resume_group(resumed, folder, spec.metric)
        if next_epoch != 2:
            raise AssertionError(f"resume_group goes on from epoch {next_epoch}, not 2")
        again = one_epoch(resumed)
    finally:
        set_deterministic(False)
    diff = max_abs_difference(uninterrupted, again)
    note = f"{type(resumed).__name__}, seeds {seeds}"
    if not ctx.on_gpu:
        exact = uninterrupted == again
        return (OK if exact else FAILED, "exact" if exact else f"max abs diff {diff:.3g}", note)
    return OK if math.isfinite(diff) else FAILED, f"max abs diff {diff:.3g}", f"{note}, {ctx.device}, deterministic kernels"


def free_gpu() -> int:
    """Collect what earlier steps left and return the bytes still allocated: the base a peak is measured from."""
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def peak_memory(ctx: Context, spec: LabSpec, data: Any) -> tuple[str, str]:
    """One epoch of a trial at repeats 1 and 5 on the GPU: the allocator's peak is what a trial
    needs there (model, optimizer, the data its trainers put on the device), which Ray's GPU
    fractions must leave room for."""
    ctx.need_cuda()
    cfg = lab_config(spec, ctx.device)
    peaks = []
    for repeats in MEMORY_REPEATS:
        base = free_gpu()
        group = spec.load().Trainer.seed_group(cfg, data, ctx.device, seed_list(cfg.seed, repeats))
        one_epoch(group)
        torch.cuda.synchronize()
        peaks.append((torch.cuda.max_memory_allocated() - base) / 2**20)
        del group
    free_gpu()
    figure = ", ".join(f"repeats {r}: {p:.0f} MiB" for r, p in zip(MEMORY_REPEATS, peaks))
    return figure, f"torch.cuda.max_memory_allocated over one epoch on {TINY_SUBSET} training samples"


def peak_rss() -> tuple[str, str]:
    """On the CPU there is no per-trial figure to read: the process's peak resident set instead."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return f"peak RSS {kib / 1024:.0f} MiB", "this process (every round trip); per-trial GPU memory n/a on the CPU"


def lab_steps(ctx: Context, table: Table) -> None:
    """Each registered lab's round trips, then (GPU) its peak memory; its data is loaded once for both."""
    with scratch_cache(ctx.work / "cache"):
        for name in lab_names():
            spec = LABS[name]
            load = functools.cache(functools.partial(tiny_lab_data, spec, ctx.tiny_root))  # inside the first step's row
            for repeats in ROUND_TRIP_REPEATS:
                run_step(table, f"round trip {name}, repeats {repeats}", lambda: round_trip(ctx, spec, load(), repeats))
            if ctx.on_gpu:
                run_step(table, f"peak memory {name}", lambda: peak_memory(ctx, spec, load()))
    if not ctx.on_gpu:
        run_step(table, "peak memory", peak_rss)


# --------------------------------------------------------------------------- benchmarks
def benchmark_row(result: dict[str, Any]) -> tuple[str, str]:
    """A benchmarks/ result's targets as the figure ('0.31 (<= 0.6: met); ...') and what each measures as the note.

    Missing a target does not fail the row: the targets were set on CPUs, and this check asks
    whether the benchmark runs on the GPU; the figure is there to be read.
    """
    targets = result.get("targets", [])
    figure = "; ".join(f"{t['value']:.3g} ({t['op']} {t['limit']:g}: {'met' if t['met'] else 'missed'})" for t in targets)
    return figure, "; ".join([*(t["what"] for t in targets), str(result["settings"].get("dataset"))])


def benchmark(ctx: Context, name: str) -> tuple[str, str]:
    """A benchmarks/ section on `cuda` through its own `run` (what `python -m benchmarks.run` calls)."""
    ctx.need_cuda()
    reps = 2 if ctx.quick else 3
    if name == "seeds":
        from benchmarks import seeds_epoch
        result = seeds_epoch.run(ctx.quick, reps, 1, str(ctx.data_root), "cuda")
    elif name == "resnet":
        from benchmarks import resnet_throughput
        result = resnet_throughput.run(ctx.quick, reps, 1, device="cuda", data_dir=str(ctx.data_root))
    else:
        from benchmarks import seq2seq_throughput
        result = seq2seq_throughput.run(ctx.quick, reps, 1, device="cuda", data_dir=str(ctx.data_root))
    torch.cuda.empty_cache()
    return benchmark_row(result)


# --------------------------------------------------------------------------- searches
@dataclass(frozen=True)
class Search:
    """One `tune-lab` search run as a user runs it, in a process (and a Ray) of its own."""

    step: str
    args: tuple[str, ...]
    quick: tuple[str, ...] = ()
    full: tuple[str, ...] = ()
    needs_cuda: bool = True


SEARCHES = (
    Search("search mlp lr, promotion ASHA, --repeats 2",
           ("mlp", "--search", "lr", "--repeats", "2", "--num-samples", "4", "--subset", "1000", "--set", "epochs=3"),
           needs_cuda=False),
    Search("search mlp optimizer (the main job), 0.25 GPU per trial",
           ("mlp", "--search", "optimizer", "--gpus-per-trial", "0.25"), quick=("--subset", "5000", "--set", "epochs=3")),
    Search("search mlp table2, on one GPU",
           ("mlp", "--search", "table2"), quick=("--subset", "1000", "--set", "epochs=1"), full=("--subset", "10000")),
    Search("search resnet model, 1 GPU per trial",
           ("resnet", "--search", "model", "--gpus-per-trial", "1"),
           quick=("--subset", "1000", "--set", "epochs=1"), full=("--subset", "5000", "--set", "epochs=2")),
)


def search_command(ctx: Context, search: Search, storage: Path, experiment: str) -> list[str]:
    size = search.quick if ctx.quick else search.full
    where = () if ctx.on_gpu else ("--gpus-per-trial", "0")  # the CPU form, also on a machine whose GPU is not used
    return [sys.executable, "-m", "tune_lab", *search.args, *size, *where, "--dataset", "mnist",
            "--data-dir", str(ctx.data_root), "--storage", str(storage), "--experiment", experiment]


def describe_search(summary: dict[str, Any], on_gpu: bool) -> tuple[bool, str]:
    """(trials ran where they should, 'N trials: 2 completed, 2 stopped early; best val_acc 0.93; on cuda:0')."""
    trials = summary["trials"]
    statuses: dict[str, int] = {}
    for trial in trials:
        statuses[trial["status"]] = statuses.get(trial["status"], 0) + 1
    devices = sorted({a.get("device") or "?" for t in trials for a in t.get("attempts", [])})
    metric = summary["metric"]
    value = ((summary.get("best") or {}).get("metrics") or {}).get(metric)
    best_text = f"best {metric} {value:.4g}" if isinstance(value, (int, float)) else "no best trial"
    placed = all(d.startswith("cuda") for d in devices) if on_gpu else devices == ["cpu"]
    figure = f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in statuses.items()) + f"; {best_text}; on {', '.join(devices)}"
    return placed, figure


def run_search(ctx: Context, search: Search, index: int) -> tuple[str, str, str]:
    """The search in a subprocess (its own Ray, started as `tune-lab` starts it), killed with its
    Ray at the time limit; ok when it exits 0 with every trial where it belongs."""
    if search.needs_cuda:
        ctx.need_cuda()
    storage, experiment = ctx.work / f"search-{index}", f"gpu-check-{index}"
    command = search_command(ctx, search, storage, experiment)
    log = ctx.work / f"search-{index}.log"
    limit = 240 if ctx.on_gpu else 300  # GPU: four searches within the check's 10 minutes; CPU: a loaded 2-core machine
    env = {**os.environ, "TUNE_LAB_OFFLINE": "1"}  # a lent machine reaches no network: never wait on a download
    env.pop("MLFLOW_TRACKING_URI", None)  # MLflow's SQLite store in the scratch results root
    if USER_CUBLAS_CONFIG is None:  # set by the deterministic round trips; a search runs as the user's would
        env.pop("CUBLAS_WORKSPACE_CONFIG", None)
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the driver and the Ray it started, nothing else
            process.wait()
            code = None
    shown = "tune-lab " + " ".join(command[3:]).replace(str(ctx.work), "$TMP")
    note = f"{ctx.data_note()}; `{shown}`"
    if code is None:
        return FAILED, f"timed out after {limit} s", note
    summary_path = storage / experiment / "summary.json"
    if not summary_path.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        return FAILED, f"exit {code}, no summary.json", f"{tail[0][:200]}; {note}"
    placed, figure = describe_search(json.loads(summary_path.read_text()), ctx.on_gpu)
    if code != 0 or not placed:
        return FAILED, f"exit {code}; {figure}", note
    return OK, figure, note


# --------------------------------------------------------------------------- the whole check
def pick_device(asked: str) -> tuple[torch.device, str | None]:
    """cuda:0 when asked or found, else the CPU and why (a row's 'skipped: ...')."""
    if asked == "cpu":
        return torch.device("cpu"), "--device cpu"
    if torch.cuda.is_available():
        return torch.device("cuda", 0), None
    if asked == "cuda":
        raise SystemExit("gpu_check: --device cuda, but torch sees no CUDA device")
    return torch.device("cpu"), "no CUDA"


def check(out: Path, quick: bool, device: str = "auto", data_dir: str | None = None) -> Table:
    """Every step in order, in a scratch folder removed afterwards; the table is at `out` as it grows."""
    where, why = pick_device(device)
    root = Path(data_dir) if data_dir else (Path(os.environ["TUNE_LAB_DATA"]) if os.environ.get("TUNE_LAB_DATA") else None)
    command = "python -m benchmarks.gpu_check" + (" --quick" if quick else "")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    table = Table(f"# GPU check (issue 35): `{command}`, {started}, {'GPU' if where.type == 'cuda' else 'CPU'} form", out)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = Path(scratch)
        tiny = write_tiny_data(work / "data")
        found = has_mnist(root)
        ctx = Context(where, why, quick, tiny, root if found and root else tiny, found, work)
        run_step(table, "environment", lambda: environment(ctx))
        lab_steps(ctx, table)
        for name in ("seeds", "resnet", "seq2seq"):
            run_step(table, f"benchmark {name} on cuda", lambda: benchmark(ctx, name))
        for index, search in enumerate(SEARCHES):
            run_step(table, search.step, lambda: run_search(ctx, search, index))
    table.finished = True
    table.write()
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the Markdown table (default {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="small searches and benchmarks (CPU form: ~2 min on 2 cores)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the GPU form where torch sees CUDA, else the CPU form; cpu: the CPU form anyway")
    parser.add_argument("--data-dir", help="dataset root for the searches and the seeds benchmark (default $TUNE_LAB_DATA)")
    args = parser.parse_args(argv)
    table = check(args.out, args.quick, args.device, args.data_dir)
    print(table.markdown())
    failed = table.failed()
    print(f"gpu_check: {len(failed)} step(s) failed{': ' + ', '.join(failed) if failed else ''}; table in {args.out}",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
