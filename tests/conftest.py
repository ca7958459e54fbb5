"""Shared fixtures: one Ray instance per test session, tiny datasets the tests write."""
from __future__ import annotations

import json
import os
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest

REAL_DATA = os.environ.get("TUNE_LAB_DATA")

# The suite means the CPU, on a GPU host too: torch and Ray, here and in every process the tests
# start, see no GPU (the clusters of fake GPUs in tests/test_cluster.py excepted: they run only where
# the host has none). benchmarks/gpu_check.py is what runs on a GPU.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

# CI replays the same generated search files every run (a red CI must be reproducible);
# a developer's runs keep exploring new ones.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session (2 CPUs, no dashboard), shut down at the end."""
    import ray

    from tune_lab.runner import start_ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    start_ray(None, num_cpus=2, num_gpus=0)  # started the way `tune-lab` starts it
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _cache_of_the_session(tmp_path_factory):
    """Derived data (decoded MNIST copies, CIFAR-10 built from its archive, reference classifiers) goes to one
    folder per test session, never the user's ~/.cache: module- and session-scoped fixtures load datasets outside
    any test's monkeypatch. Tests that look at the cache set their own."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TUNE_LAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch, tmp_path):
    """Tests never download, and never write outside their tmp_path."""
    monkeypatch.setenv("TUNE_LAB_OFFLINE", "1")
    monkeypatch.setenv("TUNE_LAB_HOME", str(tmp_path / "results"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of MNIST: magic (dtype 0x08 = ubyte, ndim), big-endian sizes, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_digit_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose class is a bright 6x6 square at one of ten places, plus noise."""
    labels = rng.integers(0, 10, size=n)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 2 + row * 12 : 8 + row * 12, 1 + col * 5 : 6 + col * 5] = 255
    return images, labels.astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """A data root holding a small, learnable MNIST-format dataset (1,200 train / 300 test)."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 1200), ("t10k", 300)):
        images, labels = make_digit_images(n, rng)
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


SUBJECTS = [("je suis", "i am"), ("tu es", "you are"), ("il est", "he is"), ("elle est", "she is"),
            ("nous sommes", "we are"), ("ils sont", "they are")]
ADJECTIVES = [("grand", "tall"), ("fatigue", "tired"), ("content", "happy"), ("malade", "sick"),
              ("pret", "ready"), ("riche", "rich"), ("occupe", "busy"), ("libre", "free")]


@pytest.fixture
def tiny_eng_fra(tmp_path) -> Path:
    """A data root with a small eng-fra.txt: 6 subjects x 8 adjectives, twice (96 lines)."""
    lines = [f"{en.capitalize()} {adj_en}.\t{fr.capitalize()} {adj_fr}."
             for fr, en in SUBJECTS for adj_fr, adj_en in ADJECTIVES] * 2
    root = tmp_path / "data"
    root.mkdir()
    (root / "eng-fra.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def real_data_root() -> Path | None:
    if REAL_DATA and (Path(REAL_DATA) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        return Path(REAL_DATA)
    return None


requires_real_mnist = pytest.mark.skipif(real_data_root() is None, reason="real MNIST not found under $TUNE_LAB_DATA")


TINY_VAE_SEARCH = """
description: one tiny corrected VAE trial
lab: vae
metric: val_elbo
mode: max
fixed: {epochs: 2, batch_size: 64, lr: 0.003, latent_dim: 8, sample_every: 1, quality_samples: 200}
params:
  kl_weight: {grid: [1.0]}
search: grid
scheduler: fifo
"""


def run_search(lab: str, space_yaml: str, data_dir: Path, root: Path, experiment: str, *options: str,
               search: str | None = None) -> dict:
    """`tune-lab LAB --search SEARCH.yaml` as a user runs it, into results root `root`; its summary.json.

    The search file (named `search`, which tune-lab tags the search with; default: the
    experiment's name) is written beside `root`, not in it, so the results root holds only what
    tune-lab wrote.
    """
    from tune_lab.cli import main

    space = root.parent / f"{search or experiment}.yaml"
    space.write_text(textwrap.dedent(space_yaml))
    code = main([lab, "--search", str(space), "--data-dir", str(data_dir), "--storage", str(root),
                 "--experiment", experiment, *options])
    assert code == 0
    return json.loads((root / experiment / "summary.json").read_text())


@pytest.fixture(scope="session")
def tiny_vae_search(ray_session, tiny_mnist, tmp_path_factory) -> Path:
    """The results root of a finished one-trial vae search (experiment "tiny-vae") on tiny_mnist.

    Shared by the vae's end-to-end test and the `tune-lab generate` tests: one search, not two.
    """
    root = tmp_path_factory.mktemp("vae-results")
    with pytest.MonkeyPatch.context() as env:  # the reference classifier of the tiny data is cached here
        env.setenv("TUNE_LAB_CACHE", str(root / "cache"))
        run_search("vae", TINY_VAE_SEARCH, tiny_mnist, root, "tiny-vae")
    return root


def start_killable_search(space: Path, data_dir: Path, root: Path, experiment: str):
    """`tune-lab mlp --search SPACE` in a process of its own, one trial at a time, to be killed."""
    return start_killable("mlp", "--search", str(space), "--data-dir", str(data_dir), "--storage", str(root),
                          "--experiment", experiment, "--max-concurrent", "1")


def start_killable(*args: str):
    """`tune-lab ARGS` in a process of its own, to be killed (`kill_when`).

    Its own session, so that a SIGKILL to it is a kill of the driver alone, as a user's would be.
    """
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "tune_lab", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_when(driver, ready, what: str, timeout: float = 180.0, every: float = 0.1, how: int | None = None) -> str:
    """SIGKILL `driver` (from `start_killable`; or send it `how`, e.g. SIGINT) as soon as `ready()` holds, then
    the Ray it started (its session); fails if it ends first or `what` never happens. Returns what the driver
    wrote on stderr."""
    import os
    import signal
    import time

    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                break
            assert driver.poll() is None, f"it ended before {what}: {driver.stderr.read()[-2000:]}"
            time.sleep(every)
        else:
            raise TimeoutError(f"never {what}")
        os.kill(driver.pid, signal.SIGKILL if how is None else how)
    finally:
        _, err = driver.communicate(timeout=120)
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return err
