"""benchmarks/gpu_check.py's CPU form (issue 35): the table a lent GPU's first run will be read against.

The check runs once, as a user runs it (`python -m benchmarks.gpu_check --quick`), in a process of
its own that sees no GPU and no $TUNE_LAB_DATA: the path a bare lent machine takes, where the
round trips and the search train on the tiny data the check writes itself. Its one search starts
its own Ray (with this machine's CPUs), as `tune-lab` does, beside the session's.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check
from labspec.registry import LABS, lab_names

# The labs the check's own process knows: tune-lab's (other tests register labs of their own in this one).
SHIPPED = [name for name in lab_names() if LABS[name].module_name.startswith("trainables.")]

REPO = Path(__file__).resolve().parent.parent
GPU_ONLY = ["benchmark seeds on cuda", "benchmark resnet on cuda", "benchmark seq2seq on cuda",
            *(s.step for s in gpu_check.SEARCHES if s.needs_cuda)]
# A resumed GAN does not go on as the uninterrupted one: GANTrainer.state_dict (trainables/generative.py)
# leaves out the shuffling generator that Trainer.state_dict saves as `rng`, so epoch 2 draws other
# batches, noise and labels (max abs diff 0.05-0.5 here; exact with the generator saved).


@pytest.fixture(scope="module")
def cpu_check(tmp_path_factory) -> dict:
    """The CPU --quick form's exit status, printed table and rows ({step: (result, figure, seconds, note)})."""
    folder = tmp_path_factory.mktemp("gpu-check")
    out = folder / "gpu_check.md"
    env = {k: v for k, v in os.environ.items() if k not in ("TUNE_LAB_DATA", "MLFLOW_TRACKING_URI")}
    env.update(CUDA_VISIBLE_DEVICES="", TUNE_LAB_OFFLINE="1", TUNE_LAB_HOME=str(folder / "home"),
               TUNE_LAB_CACHE=str(folder / "cache"))
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--quick", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    table = out.read_text()
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0] not in ("step", "---"):
            rows[cells[0]] = tuple(cells[1:])
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "table": table, "rows": rows}


def test_the_table_has_every_step_in_order(cpu_check):
    round_trips = [f"round trip {lab}, repeats {r}" for lab in SHIPPED for r in gpu_check.ROUND_TRIP_REPEATS]
    expected = ["environment", *round_trips, "peak memory", *GPU_ONLY[:3], *(s.step for s in gpu_check.SEARCHES)]
    assert list(cpu_check["rows"]) == expected, cpu_check["stderr"][-3000:]
    assert cpu_check["table"].startswith("# GPU check (issue 35)") and "CPU form" in cpu_check["table"]
    assert "cut off" not in cpu_check["table"]
    assert cpu_check["table"] in cpu_check["stdout"]  # printed as written


@pytest.mark.parametrize("lab", SHIPPED)
def test_every_round_trip_continues_exactly_on_the_cpu(cpu_check, lab):
    for repeats in gpu_check.ROUND_TRIP_REPEATS:
        result, figure, _, note = cpu_check["rows"][f"round trip {lab}, repeats {repeats}"]
        assert (result, figure) == ("ok", "exact"), note


def test_what_needs_cuda_is_skipped_and_the_rest_ran(cpu_check):
    rows = cpu_check["rows"]
    for step in GPU_ONLY:
        assert rows[step][0] == "skipped: no CUDA"
    assert "cuda available False" in rows["environment"][1]
    assert rows["peak memory"][0] == "ok" and rows["peak memory"][1].startswith("peak RSS")
    result, figure, _, note = rows[gpu_check.SEARCHES[0].step]
    assert result == "ok", cpu_check["stderr"][-3000:]
    assert figure.startswith("4 trials:") and figure.endswith("on cpu")  # --repeats 2 under promotion ASHA, on the CPU
    assert "tiny synthetic data" in note and "--gpus-per-trial 0" in note


def test_the_exit_status_says_whether_a_step_that_ran_failed(cpu_check):
    failed = [step for step, (result, *_) in cpu_check["rows"].items() if result == "FAILED"]
    assert cpu_check["code"] == (1 if failed else 0), failed


def test_searches_read_mnist_where_the_data_dir_has_it(tiny_mnist, tmp_path):
    assert gpu_check.has_mnist(tiny_mnist) and not gpu_check.has_mnist(tmp_path) and not gpu_check.has_mnist(None)
    import torch

    ctx = gpu_check.Context(torch.device("cuda", 0), None, True, tmp_path, tiny_mnist, True, tmp_path)
    command = gpu_check.search_command(ctx, gpu_check.SEARCHES[1], tmp_path / "s", "e")
    assert command[command.index("--data-dir") + 1] == str(tiny_mnist) and "--gpus-per-trial" in command
    assert command[command.index("--gpus-per-trial") + 1] == "0.25" and command.count("--gpus-per-trial") == 1
    assert "MNIST from" in ctx.data_note()


def test_a_gpu_search_whose_trials_ran_on_the_cpu_fails():
    """A lent GPU whose trials quietly train on the CPU must not pass the check."""
    summary = {"metric": "val_acc", "best": {"metrics": {"val_acc": 0.9}},
               "trials": [{"status": "completed", "attempts": [{"device": "cuda:0"}]},
                          {"status": "stopped early", "attempts": [{"device": "cpu"}]}]}
    placed, figure = gpu_check.describe_search(summary, on_gpu=True)
    assert not placed and figure == "2 trials: 1 completed, 1 stopped early; best val_acc 0.9; on cpu, cuda:0"
    assert gpu_check.describe_search({**summary, "trials": summary["trials"][:1]}, on_gpu=True)[0]
