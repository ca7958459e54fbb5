"""The command line: fast answers, one-line errors with exit code 2, nothing started on bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tune_lab.cli import main, parse_set

PROBE = """
import sys
from tune_lab.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "ray", "mlflow", "torchvision") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_help_imports_no_heavy_library():
    done = run_cli("--help")
    assert done.returncode == 0
    assert "tune-lab" in done.stdout and "mlp" in done.stdout
    assert "HEAVY=\n" in done.stderr or done.stderr.strip().endswith("HEAVY=")


def test_list_shows_labs_searches_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mlp:" in out and "fashion_mnist" in out
    assert "--search optimizer" in out and "Which optimizer" in out


def test_bad_search_file_fails_before_ray(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lab: mlp\nparams:\n  optimizer: {grid: [sgd, adamw]}\n")
    done = run_cli("mlp", "--search", str(bad))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if not line.startswith("HEAVY=")]
    assert len(lines) == 1 and str(bad) in lines[0] and "params.optimizer.grid[1]" in lines[0]
    assert "ray" not in done.stderr.split("HEAVY=")[1] and "torch" not in done.stderr.split("HEAVY=")[1]


def test_unknown_set_key_fails_before_ray():
    done = run_cli("mlp", "--search", "optimizer", "--set", "epoch=2")
    assert done.returncode == 2
    assert "--set epoch: unknown parameter" in done.stderr
    assert "ray" not in done.stderr.split("HEAVY=")[1]


def test_a_remote_results_root_without_a_tracking_server_is_refused_before_ray():
    done = run_cli("mlp", "--search", "optimizer", "--storage", "s3://bucket/results", env={"MLFLOW_TRACKING_URI": ""})
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if not line.startswith("HEAVY=")]
    assert lines == ["tune-lab: error: --storage s3://bucket/results is remote: also give --tracking-uri "
                     "(an MLflow server all nodes reach)"]
    assert "torch" not in done.stderr.split("HEAVY=")[1]


@pytest.mark.parametrize("text, expected", [
    ("epochs=2", ("epochs", 2)), ("lr=1e-3", ("lr", 0.001)), ("faithful=true", ("faithful", True)),
    ("optimizer=adam", ("optimizer", "adam")), ("lr=0.5", ("lr", 0.5)),
])
def test_parse_set(text, expected):
    assert parse_set(text) == expected


def test_set_takes_several_pairs_and_repeats():
    from tune_lab.cli import build_parser

    args = build_parser().parse_args(["seq2seq", "--search", "cell", "--set", "optimizer=sgd", "lr=0.01",
                                      "--subset", "5", "--set", "attention=false"])
    assert args.overrides == [("optimizer", "sgd"), ("lr", 0.01), ("attention", False)] and args.subset == 5


def test_malformed_set_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["mlp", "--search", "optimizer", "--set", "epochs"])
    assert info.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_more_gpus_per_trial_than_the_machine_has_is_refused(ray_session, tiny_mnist, tmp_path, capsys):
    code = main(["mlp", "--search", "optimizer", "--gpus-per-trial", "2", "--data-dir", str(tiny_mnist),
                 "--storage", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("tune-lab: error: --gpus-per-trial 2: the cluster has 0 GPU(s)")
    assert not (tmp_path / "mlflow.db").exists()  # refused before anything was recorded


def test_a_set_value_that_a_sweep_sets_again_is_said_in_one_line(tmp_path, capsys):
    """table2's epochs sweep still runs 10 / 20 / 40 epochs whatever --set epochs says: a warning says so.

    The search is stopped before Ray at the data (an empty --data-dir), after the warning."""
    code = main(["mlp", "--search", "table2", "--set", "epochs=1", "lr=0.01", "--dataset", "mnist",
                 "--data-dir", str(tmp_path / "empty")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 2 and err[1].startswith("tune-lab: error: mnist:")
    assert err[0] == ("tune-lab: warning: --set epochs=1: the epochs sweep still runs epochs=10 / 20 / 40 "
                      "(its other sweeps use 1)")
    main(["mlp", "--search", "table2", "--set", "lr=0.01", "faithful=true", "--dataset", "mnist",
          "--data-dir", str(tmp_path / "empty")])
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "tune-lab: warning: --set faithful=true: variant 'corrected' sets faithful=false in its trials"
    assert not [line for line in err if "lr=" in line]  # a value no sweep or variant sets again is not mentioned


@pytest.mark.parametrize("sentence", ["", "   ", "%%%"])
def test_translate_refuses_empty_input_before_looking_for_a_checkpoint(sentence, tmp_path):
    done = run_cli("translate", "je suis la .", sentence, "--storage", str(tmp_path))
    lines = [line for line in done.stderr.splitlines() if not line.startswith("HEAVY=")]
    assert done.returncode == 2 and done.stdout == ""
    assert lines == [f"tune-lab: error: translate: sentence 2 ({sentence!r}) has no French word to translate; "
                     'give text, e.g. tune-lab translate "je suis fatigue ."']
    assert "torch" not in done.stderr.split("HEAVY=")[1]


def test_ui_on_a_busy_port_exits_non_zero_naming_the_port(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli("ui", "--port", str(port), "--storage", str(tmp_path / "results"))
    lines = [line for line in done.stderr.splitlines() if not line.startswith("HEAVY=")]
    assert done.returncode == 2 and done.stdout == ""  # no URL that leads to someone else's server
    assert len(lines) == 1 and f"--port {port}: 127.0.0.1:{port} is already in use" in lines[0]
    assert f"--port {port + 1}" in lines[0]
    assert not (tmp_path / "results").exists()


def test_ui_help_says_its_default_port():
    done = run_cli("ui", "--help")
    assert done.returncode == 0 and "(default 5000)" in done.stdout


def test_dry_run_prints_the_tuner_and_starts_nothing(tmp_path):
    """--dry-run: the Tuner call tune_lab.plan builds (param space, scheduler and its rungs, resources per
    trial), with no Ray started, no data read and nothing written."""
    done = run_cli("mlp", "--search", "lr", "--dry-run", "--seed", "3", "--cpus-per-trial", "2",
                   "--storage", str(tmp_path / "results"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(f"# tune-lab mlp --search lr: 16 trial(s), {os.cpu_count() // 2} at once; nothing started")
    assert "'lr': tune.loguniform(1e-05, 0.3)," in out and "'seed': 3," in out
    assert "search_alg=PauseAwareLimiter(...)" in out
    assert "scheduler=PromotionASHA(grace_period=1, reduction_factor=3),  # rungs at epochs 1, 3, 9" in out
    assert "{'cpu': 2, 'gpu': 0}" in out
    assert "tune.Tuner(" in out and out.rstrip().endswith(")")
    assert not (tmp_path / "results").exists()
    optimizer = run_cli("mlp", "--search", "optimizer", "--dry-run", "--scheduler", "fifo",
                        env={"CUDA_VISIBLE_DEVICES": ""}).stdout
    assert "'optimizer': tune.grid_search(['sgd', 'adam', 'adadelta'])," in optimizer
    assert "scheduler=FIFOScheduler(),  # no rungs" in optimizer and "pause_epochs=()), " in optimizer
    repeated = run_cli("mlp", "--search", "optimizer", "--dry-run", "--repeats", "3", env={"CUDA_VISIBLE_DEVICES": ""})
    assert "pause_epochs=(2, 6, 18), repeats=3), " in repeated.stdout and "'repeats'" not in repeated.stdout
