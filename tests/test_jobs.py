"""Searches as Ray Jobs: a real head (`ray start --head --block`, token authentication on, its
dashboard on 127.0.0.1), `tune-lab submit --wait`, `jobs`, `logs`, `stop`, and bad input."""
from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Iterator

import pytest

from benchmarks.local_servers import free_port, ray_head
from tune_lab.cli import main

SEARCH = """
description: two learning rates, submitted
lab: mlp
fixed: {{epochs: {epochs}, batch_size: 64}}
params:
  lr: {{grid: [0.001, 0.01]}}
"""


@pytest.fixture(scope="module")
def head() -> Iterator[str]:
    """A one-node cluster of our own, token authentication on, ended by its process id; its dashboard's URL."""
    with ray_head(cpus=2) as url:
        yield url


def job_status(url: str, capsys, job: str) -> str:
    capsys.readouterr()
    assert main(["jobs", "--address", url]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(job)]
    assert len(rows) == 1, rows
    return rows[0][4]  # job owner lab search STATUS start duration


def submitted_id(out: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if line.startswith("submitted "))


def test_submit_wait_list_logs_and_stop(head, tiny_mnist, tmp_path, capsys):
    space = tmp_path / "my_lrs.yaml"  # the user's own file: it travels with the job
    space.write_text(textwrap.dedent(SEARCH.format(epochs=2)))
    root = tmp_path / "results"
    common = ["--search", str(space), "--data-dir", str(tiny_mnist), "--storage", str(root)]
    assert main(["submit", "--address", head, "--wait", "mlp", *common, "--experiment", "job1"]) == 0
    out = capsys.readouterr().out
    job = submitted_id(out)
    assert job.startswith("tune-lab-mlp-my_lrs-") and "Report:" in out  # --wait printed the search's log
    summary = json.loads((root / "job1" / "summary.json").read_text())
    assert summary["complete"] and {t["status"] for t in summary["trials"]} == {"completed"}
    from mlflow.tracking import MlflowClient

    mlflow = MlflowClient(tracking_uri=summary["mlflow"]["tracking_uri"])  # the store in the results root
    assert summary["mlflow"]["tracking_uri"] == f"sqlite:///{root / 'mlflow.db'}"
    parent = summary["mlflow"]["parent_run_id"]
    runs = mlflow.search_runs([summary["mlflow"]["experiment_id"]], f"tags.mlflow.parentRunId = '{parent}'")
    assert {r.info.run_id for r in runs} == {t["mlflow_run_id"] for t in summary["trials"]}  # one per trial
    assert job_status(head, capsys, job) == "SUCCEEDED"
    from tune_lab.jobs import owner

    assert main(["jobs", "--address", head, "--owner", owner()]) == 0 and job in capsys.readouterr().out
    assert main(["jobs", "--address", head, "--owner", "someone-else"]) == 0
    assert capsys.readouterr().out.strip() == "no tune-lab jobs of someone-else"
    assert main(["logs", job, "--address", head]) == 0 and "Best trial" in capsys.readouterr().out

    space.write_text(textwrap.dedent(SEARCH.format(epochs=500)))
    assert main(["submit", "--address", head, "mlp", *common, "--experiment", "job2"]) == 0
    second = submitted_id(capsys.readouterr().out)
    deadline = time.time() + 120
    while job_status(head, capsys, second) == "PENDING" and time.time() < deadline:
        time.sleep(1)
    assert main(["stop", second, "--address", head]) == 0
    while job_status(head, capsys, second) not in ("STOPPED", "FAILED") and time.time() < deadline:
        time.sleep(1)
    assert job_status(head, capsys, second) == "STOPPED"


def test_bad_input_is_one_line_and_exit_2(head, capsys, monkeypatch, tmp_path):
    capsys.readouterr()
    assert main(["stop", "tune-lab-no-such-job", "--address", head]) == 2
    assert "no job 'tune-lab-no-such-job'" in capsys.readouterr().err
    assert main(["jobs", "--address", f"http://127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "nothing answers at" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    assert main(["jobs", "--address", head]) == 2
    assert "wants Ray's token" in capsys.readouterr().err
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    assert main(["logs", "x"]) == 2 and "no cluster given" in capsys.readouterr().err


def test_the_kuberay_rayjob_runs_tune_lab_as_tune_lab_expects():
    import shlex

    import ray
    import yaml

    from tune_lab.cli import build_parser
    from tune_lab.spaces import load_search

    job = yaml.safe_load((Path(__file__).parent.parent / "k8s" / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec, cluster = job["spec"], job["spec"]["rayClusterSpec"]
    words = shlex.split(spec["entrypoint"])
    assert words[:3] == ["python", "-m", "tune_lab"] and words[-2:] == ["--address", "auto"]
    args = build_parser().parse_args(words[3:])  # a search tune-lab accepts, of a search that exists
    load_search(args.search, args.command, {})
    assert cluster["rayVersion"] == ray.__version__  # the Ray tune-lab pins and is tested with
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0" and "serviceType" not in head  # no public dashboard
    head_env = {e["name"]: e for e in head["template"]["spec"]["containers"][0]["env"]}
    assert {"MLFLOW_TRACKING_URI", "TUNE_LAB_HOME"} <= set(head_env)
    from tune_lab.capacity import JOB_CAP_ENV

    assert int(head_env[JOB_CAP_ENV]["value"]) >= 1  # the admin's per-job cap, where the drivers run
    # ... and the server it names is k8s/mlflow.yaml's, on PostgreSQL from a Secret
    deployment, service = yaml.safe_load_all((Path(__file__).parent.parent / "k8s" / "mlflow.yaml").read_text())
    meta = service["metadata"]
    assert head_env["MLFLOW_TRACKING_URI"]["value"] == f"http://{meta['name']}.{meta['namespace']}.svc.cluster.local:5000"
    assert service["spec"]["type"] == "ClusterIP"  # no public UI
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    command = server["command"]
    assert command[:2] == ["mlflow", "server"] and command[command.index("--backend-store-uri") + 1] == "$(MLFLOW_DB_URI)"
    db = {e["name"]: e for e in server["env"]}["MLFLOW_DB_URI"]
    assert "secretKeyRef" in db["valueFrom"] and "postgresql" in (Path(__file__).parent.parent / "k8s" / "mlflow.yaml").read_text()
    workers = cluster["workerGroupSpecs"]
    assert any("nvidia.com/gpu" in w["template"]["spec"]["containers"][0]["resources"]["limits"] for w in workers)
    pods = [head["template"], *(w["template"] for w in workers), spec["submitterPodTemplate"]]
    for pod in pods:  # token authentication on every node and for the submitter, from one Secret
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]


def test_a_job_carries_every_package_tune_lab_installs(tmp_path):
    """A submitted job runs from its working_dir on the head: every package of pyproject's must be in it."""
    import tomllib

    from tune_lab.jobs import stage

    assert stage("optimizer", "mlp", tmp_path) == "optimizer"  # a shipped search travels with the code
    staged = {p.name for p in tmp_path.iterdir() if (p / "__init__.py").is_file()}
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert staged == {name.rstrip("*") for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert (tmp_path / "labspec" / "registry.py").is_file() and (tmp_path / "search_spaces" / "mlp").is_dir()
