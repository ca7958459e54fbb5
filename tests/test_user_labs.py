"""Labs that live outside the package: `--labs FILE.py|MODULE`, $TUNE_LAB_LABS, a module object.

The searches run as a user runs them, `python -m tune_lab ...` in a process of its own: the lab file
is imported there, its folder reaches Ray's trial processes through PYTHONPATH, and the registry of
the pytest process stays the shipped one. The lab is tests/own_lab_fixture/mycnn.py (a tiny CNN on
the shipped MNIST loader), copied per test where a test moves it away.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import kill_when, start_killable
from tests.test_jobs import head  # noqa: F401  (a one-node cluster of our own, for `tune-lab submit`)

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "own_lab_fixture" / "mycnn.py"

SEARCH = """
description: two learning rates of my own CNN
lab: mycnn
fixed: {{epochs: {epochs}, batch_size: 64}}
params:
  lr: {{grid: [0.003, 0.01]}}
search: grid
scheduler: fifo
"""

# `python -c` with what a command printed on stderr and which heavy modules it imported.
PROBE = """
import sys, time
began = time.perf_counter()
from tune_lab.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "ray", "mlflow", "importlib.metadata") if m in sys.modules)
print(f"HEAVY={','.join(heavy)} SECONDS={time.perf_counter() - began:.3f}", file=sys.stderr)
sys.exit(code)
"""


def tune_lab(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m tune_lab ARGS` in a process of its own (from the repository, as a user's checkout)."""
    return subprocess.run([sys.executable, "-m", "tune_lab", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd or REPO)


def probe(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, list[str], str, float]:
    """(exit code, the stderr lines but the probe's, the heavy modules imported, seconds) of `tune-lab ARGS`."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd or REPO)
    lines = done.stderr.splitlines()
    heavy, seconds = lines[-1].removeprefix("HEAVY=").split(" SECONDS=")
    return done.returncode, lines[:-1], heavy, float(seconds)


def own_lab(folder: Path) -> Path:
    """A copy of the fixture lab in `folder` (a test may move it away)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(FIXTURE, folder / "mycnn.py"))


def write_search(folder: Path, epochs: int = 2) -> Path:
    space = folder / "mine.yaml"
    space.write_text(textwrap.dedent(SEARCH.format(epochs=epochs)))
    return space


@pytest.fixture(scope="module")
def finished(tiny_mnist, tmp_path_factory):
    """A finished 2-trial search of the lab file, run through `--labs FILE mycnn --search ...`: (root, lab file)."""
    base = tmp_path_factory.mktemp("own-lab")
    lab = own_lab(base / "labs")
    root = base / "results"
    began = time.monotonic()
    done = tune_lab("--labs", str(lab), "mycnn", "--search", str(write_search(base)), "--data-dir", str(tiny_mnist),
                    "--storage", str(root), "--experiment", "mycnn-try", cwd=base)
    print(f"search of the own lab: {time.monotonic() - began:.1f} s")
    assert done.returncode == 0, done.stderr[-4000:]
    return root, lab


def test_a_search_of_a_lab_file_runs_its_trials_and_records_where_the_lab_came_from(finished):
    root, lab = finished
    summary = json.loads((root / "mycnn-try" / "summary.json").read_text())
    assert summary["lab"] == "mycnn" and summary["lab_source"] == str(lab)
    assert [t["status"] for t in summary["trials"]] == ["completed", "completed"]
    assert all(t["epochs_run"] == 2 for t in summary["trials"])
    assert (root / "mycnn-try" / "report" / "report.html").is_file()


def test_report_finds_the_lab_again_without_labs_and_names_the_file_once_it_is_gone(finished, tmp_path):
    root, lab = finished
    done = tune_lab("report", "mycnn-try", "--storage", str(root), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Best trial" in done.stdout and "report.html" in done.stdout

    moved = tmp_path / "elsewhere" / "mycnn.py"
    moved.parent.mkdir()
    lab.rename(moved)
    try:
        code, lines, heavy, _ = probe("report", "mycnn-try", "--storage", str(root), cwd=tmp_path)
        assert code == 2
        assert lines == [f"tune-lab: error: report mycnn-try: lab 'mycnn' came from {lab}, which is gone; "
                         f"pass --labs with where it is now"]
        assert "torch" not in heavy and "ray" not in heavy
        done = tune_lab("report", "mycnn-try", "--storage", str(root), "--labs", str(moved), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        moved.rename(lab)


def test_tensorboard_of_the_search_needs_no_labs(finished, tmp_path):
    """TensorBoard reads the event files only: the lab is not imported (nor needed where its file is gone)."""
    root, _ = finished
    from tests.test_report import free_port

    server = subprocess.Popen([sys.executable, "-m", "tune_lab", "tensorboard", "mycnn-try", "--storage", str(root),
                               "--port", str(free_port())], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True, cwd=tmp_path)
    try:
        first = server.stdout.readline()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=60)
    assert first.startswith("TensorBoard for mycnn-try (2 trials): http://127.0.0.1:"), first


def test_an_unknown_lab_of_a_search_is_one_line_not_a_traceback(tmp_path, capsys):
    """A search of a lab that is not registered and that recorded no source (run before it could):
    one line that says how to import it, not `KeyError: unknown lab` from deep in the report."""
    from tune_lab.cli import main

    folder = tmp_path / "results" / "theirs-try"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"experiment": "theirs-try", "lab": "theirs", "trials": []}))
    assert main(["report", "theirs-try", "--storage", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err == ("tune-lab: error: report theirs-try: unknown lab 'theirs'; a lab of your own needs --labs FILE.py "
                   "(or TUNE_LAB_LABS)\n")


BROKEN = {
    "syntax": ("def build(:\n    pass\n", "SyntaxError: invalid syntax (broken.py, line 1)"),
    "missing package": ("from labspec.registry import register_lab\nimport not_a_package_of_anyone\n",
                        "ModuleNotFoundError: No module named 'not_a_package_of_anyone' (broken.py, line 2)"),
    "its own raise": ("raise RuntimeError('half written')\n", "RuntimeError: half written (broken.py, line 1)"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
@pytest.mark.parametrize("where", ["before the lab", "after the lab"])
def test_a_lab_file_that_cannot_be_imported_is_one_line_before_ray(kind, where, tmp_path, tiny_mnist):
    text, last_line = BROKEN[kind]
    broken = tmp_path / "broken.py"
    broken.write_text(text)
    root = tmp_path / "results"
    search = ["--search", str(write_search(tmp_path)), "--data-dir", str(tiny_mnist), "--storage", str(root)]
    args = ["--labs", str(broken), "mlp", *search] if where == "before the lab" else ["mlp", f"--labs={broken}", *search]
    began = time.monotonic()
    code, lines, heavy, _ = probe(*args)
    assert time.monotonic() - began < 5
    assert code == 2
    assert lines == [f"tune-lab: error: --labs {broken}: {last_line}"]
    assert "ray" not in heavy and "torch" not in heavy
    assert not root.exists()  # nothing written


def test_a_lab_module_lacking_trainer_is_one_line_naming_it(tmp_path):
    lab = tmp_path / "notrainer.py"
    lab.write_text(FIXTURE.read_text().replace("class Trainer(ClassifierTrainer):", "class Learner(ClassifierTrainer):"))
    code, lines, heavy, _ = probe("--labs", str(lab), "list")
    assert code == 2
    assert lines == [f"tune-lab: error: --labs {lab}: lab 'mycnn': module notrainer lacks Trainer (a lab's module "
                     f"provides Trainer, load_data, report_figures, report_text, sample_images; see "
                     f"labspec.registry.LabModule)"]
    assert "ray" not in heavy


@pytest.mark.parametrize("body, says", [
    ("class Trainer:\n    def train_epoch(self): ...\n", "notrainer.Trainer lacks evaluate"),
    ("Trainer = 3\n", "notrainer.Trainer = 3 is not a class"),
])
def test_a_trainer_that_is_no_trainer_is_one_line(body, says, tmp_path):
    lab = tmp_path / "notrainer.py"
    text = FIXTURE.read_text().replace("class Trainer(ClassifierTrainer):", "class Unused(ClassifierTrainer):")
    lab.write_text(text + "\n" + body)
    code, lines, _, _ = probe("--labs", str(lab), "list")
    assert code == 2 and len(lines) == 1 and says in lines[0], lines


def test_a_file_that_registers_no_lab_or_shadows_a_module_is_one_line(tmp_path):
    plain = tmp_path / "helpers.py"
    plain.write_text("X = 1\n")
    code, lines, _, _ = probe("--labs", str(plain), "list")
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"tune-lab: error: --labs {plain}: registers no lab")
    shadow = tmp_path / "yaml.py"
    shadow.write_text("X = 1\n")
    code, lines, _, _ = probe("--labs", str(shadow), "list")
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"tune-lab: error: --labs {shadow}: its name 'yaml' is already the module ")
    code, lines, _, _ = probe("--labs", str(tmp_path / "nowhere.py"), "list")
    assert (code, lines) == (2, [f"tune-lab: error: --labs {tmp_path / 'nowhere.py'}: no such file"])


def test_tune_lab_labs_works_like_labs(tmp_path):
    """$TUNE_LAB_LABS: a list like PATH's of the same FILE.py / MODULE values, for every command."""
    env = {"TUNE_LAB_LABS": os.pathsep.join([str(FIXTURE), ""])}
    done = tune_lab("list", env=env, cwd=tmp_path)
    assert done.returncode == 0 and "mycnn: a tiny CNN of my own on MNIST" in done.stdout
    done = tune_lab("mycnn", "--help", env=env, cwd=tmp_path)
    assert done.returncode == 0 and "--dataset {mnist,fashion_mnist}" in done.stdout
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    code, lines, heavy, _ = probe("list", env={"TUNE_LAB_LABS": str(broken)})
    assert (code, lines) == (2, [f"tune-lab: error: TUNE_LAB_LABS: {broken}: SyntaxError: invalid syntax (broken.py, line 1)"])


def test_a_module_name_works_like_a_file(tmp_path):
    """--labs MODULE: importable from where the command runs (here: a package in its working directory)."""
    package = tmp_path / "mylabs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy2(FIXTURE, package / "cnn.py")
    done = tune_lab("--labs", "mylabs.cnn", "list", cwd=tmp_path)
    assert done.returncode == 0 and "mycnn:" in done.stdout, done.stderr


def installed_package(site: Path, module_text: str, name: str = "mycnn") -> dict[str, str]:
    """A distribution on the path that declares a `tune_lab.labs` entry point to module `mycnn_ep`, as
    `pip install` of a student's package would leave it; the environment that puts it on sys.path."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "mycnn_ep.py").write_text(module_text)
    dist = site / "my_cnn_lab-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cnn-lab\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[tune_lab.labs]\n{name} = mycnn_ep\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def test_an_installed_package_brings_its_labs_through_the_entry_point_group(tmp_path):
    env = installed_package(tmp_path / "site", FIXTURE.read_text())
    done = tune_lab("list", env=env, cwd=tmp_path)
    assert done.returncode == 0 and "mycnn: a tiny CNN of my own on MNIST" in done.stdout, done.stderr
    # A broken one is someone else's package: a warning, and every other command still works.
    broken = installed_package(tmp_path / "broken", "def f(:\n")
    done = tune_lab("list", env=broken, cwd=tmp_path)
    assert done.returncode == 0 and "mlp:" in done.stdout
    assert done.stderr.splitlines() == ["tune-lab: warning: entry point mycnn = mycnn_ep: SyntaxError: invalid syntax "
                                        "(mycnn_ep.py, line 1); its labs are left out"]
    # Its labs are checked against the contract when a command uses them (not at every --help).
    lacking = installed_package(tmp_path / "lacking", FIXTURE.read_text().replace("class Trainer(", "class Learner("))
    assert tune_lab("list", env=lacking, cwd=tmp_path).returncode == 0
    code, lines, heavy, _ = probe("mycnn", "--search", str(write_search(tmp_path)), env=lacking, cwd=tmp_path)
    assert code == 2 and "ray" not in heavy
    assert lines == ["tune-lab: error: lab 'mycnn': module mycnn_ep lacks Trainer (a lab's module provides Trainer, "
                     "load_data, report_figures, report_text, sample_images; see labspec.registry.LabModule)"]


HELP_STEPS = """
import sys, time
began = time.perf_counter()
import tune_lab.cli
imported = time.perf_counter()
from tune_lab import user_labs
user_labs.load_command_line([])
scanned = time.perf_counter()
tune_lab.cli.build_parser().format_help()
built = time.perf_counter()
heavy = sorted(m for m in ("torch", "ray", "mlflow", "importlib.metadata") if m in sys.modules)
print(f"{imported - began:.4f} {scanned - imported:.4f} {built - scanned:.4f} {','.join(heavy)}")
"""


def test_help_stays_quick_and_imports_no_torch():
    """No --labs: the entry points are scanned without importlib.metadata (whose import alone is ~0.1-0.3 s),
    and nothing heavy is imported. The whole `--help` is timed too, but its absolute time is the machine's."""
    runs = [probe("--help") for _ in range(3)]
    assert all(code == 0 for code, *_ in runs)
    assert all(heavy == "" for _, _, heavy, _ in runs), runs[0][2]
    steps = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", HELP_STEPS], capture_output=True, text=True, timeout=60, cwd=REPO)
        imported, scanned, built, heavy = (done.stdout.split() + [""])[:4]
        assert heavy == "", heavy
        steps.append((float(imported), float(scanned), float(built)))
    best = [min(step[i] for step in steps) for i in range(3)]
    print(f"tune-lab --help, best of 3: {min(s for *_, s in runs):.3f} s in all; import {best[0]:.3f} s, "
          f"labs of one's own (none given; entry points scanned) {best[1]:.4f} s, parser {best[2]:.3f} s")
    assert best[1] < 0.05  # what --labs support adds to every command when none is given


def test_a_lab_defined_in_main_runs_its_trials(tiny_mnist, tmp_path):
    """A lab whose `module` is a module object (a notebook's `__main__`, which trial processes cannot import):
    Ray pickles the spec with the lab's members by value, and the trials train."""
    script = tmp_path / "notebook.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from dataclasses import dataclass

        import torch.nn.functional as F
        from torch import nn

        from trainables.classify import ClassifierTrainer
        from trainables.data import load_images as load_data
        from labspec.hparams import CLASSIFIER_METRICS, TrainConfig
        from labspec.registry import register_lab

        report_figures = report_text = sample_images = None

        @register_lab("cell", module=sys.modules[__name__], datasets=("mnist",), description="a notebook cell's lab",
                      metrics=CLASSIFIER_METRICS, metric="val_acc")
        @dataclass
        class CellConfig(TrainConfig):
            epochs: int = 1
            batch_size: int = 64

        class Trainer(ClassifierTrainer):
            def build_model(self, data):
                return nn.Sequential(nn.Flatten(), nn.Linear(784, data.num_classes))

            def loss(self, outputs, targets):
                return F.cross_entropy(outputs, targets)

        if __name__ == "__main__":
            from tune_lab.cli import main

            sys.exit(main(["cell", "--search", sys.argv[1], "--data-dir", {str(tiny_mnist)!r},
                           "--storage", sys.argv[2], "--experiment", "cell"]))
        """))
    space = tmp_path / "cell.yaml"
    space.write_text("lab: cell\nparams:\n  lr: {grid: [0.01, 0.02]}\nscheduler: fifo\n")
    root = tmp_path / "results"
    done = subprocess.run([sys.executable, str(script), str(space), str(root)], capture_output=True, text=True,
                          timeout=600, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((root / "cell" / "summary.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["completed", "completed"]
    assert summary["lab_source"] is None


def test_an_interrupted_search_of_a_lab_file_resumes_without_labs(tiny_mnist, tmp_path):
    """Killed (-9) before it wrote summary.json, from $TUNE_LAB_LABS: `tune-lab resume` finds the lab's file in
    the search's MLflow parent run and continues the search."""
    lab = own_lab(tmp_path / "labs")
    root = tmp_path / "results"
    space = write_search(tmp_path, epochs=6)
    os.environ["TUNE_LAB_LABS"] = str(lab)  # the killable driver's environment (start_killable passes ours)
    try:
        driver = start_killable("mycnn", "--search", str(space), "--data-dir", str(tiny_mnist), "--storage", str(root),
                                "--experiment", "killed", "--max-concurrent", "1")
    finally:
        del os.environ["TUNE_LAB_LABS"]
    folder = root / "killed"
    kill_when(driver, lambda: any(folder.glob("*/checkpoint_*")), "a trial saved a checkpoint")
    assert not (folder / "summary.json").exists()
    done = tune_lab("resume", "killed", "--storage", str(root), cwd=tmp_path,
                    env={"TUNE_LAB_LABS": ""})
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["complete"] and summary["lab_source"] == str(lab)
    assert all(t["status"] == "completed" and t["epochs_run"] == 6 for t in summary["trials"])


def test_pythonpath_keeps_a_folder_that_would_shadow_what_trials_import(tmp_path, monkeypatch):
    """The lab file's folder goes on the trial processes' PYTHONPATH, before site-packages: a numpy.py beside
    the lab file would replace numpy there, which is refused in one line (Ray is not started)."""
    from tune_lab import user_labs

    lab = own_lab(tmp_path / "labs")
    item = user_labs.Loaded(source=str(lab), module="mycnn", labs=(), file=lab, installed=False)
    monkeypatch.setattr(user_labs, "_LOADED", {str(lab): item})
    env = {"PYTHONPATH": "/somewhere"}
    user_labs.export_pythonpath(env)
    assert env["PYTHONPATH"] == os.pathsep.join(["/somewhere", str(lab.parent)])
    (lab.parent / "numpy.py").write_text("")
    with pytest.raises(user_labs.LabsError, match=r"holds numpy.py, which trial processes would import instead"):
        user_labs.export_pythonpath({})
    assert user_labs.runtime_env() == {"py_modules": [str(lab)]}  # a joined cluster gets the file itself


def test_a_submitted_search_stages_the_lab_file_and_imports_it_on_the_cluster(tmp_path, monkeypatch):
    """`tune-lab submit`: the lab's file travels in the job's working_dir and its command gets --labs."""
    from tune_lab import jobs, user_labs

    lab = own_lab(tmp_path / "labs")
    item = user_labs.Loaded(source=str(lab), module="mycnn", labs=("mycnn",), file=lab, installed=False)
    monkeypatch.setattr(user_labs, "_LOADED", {str(lab): item})
    monkeypatch.setattr(user_labs, "LABS", {"mycnn": _Spec(source=str(lab), module="mycnn")})
    staged = tmp_path / "staged"
    staged.mkdir()
    assert jobs.stage_labs("mycnn", staged) == ["mycnn.py"]
    assert (staged / "mycnn.py").read_text() == lab.read_text()  # the top of the job's working_dir
    command = jobs.entrypoint("mycnn", "submitted/mine.yaml", ["--labs", str(lab), "--set", "epochs=1",
                                                               f"--labs={lab}"], ["mycnn.py"])
    assert command == ("python -m tune_lab --labs mycnn.py mycnn --search submitted/mine.yaml "
                       "--set epochs=1 --storage ${TUNE_LAB_HOME:-$HOME/tune-lab-results} --address auto")


def test_a_submitted_search_of_a_lab_file_runs_on_the_cluster(head, tiny_mnist, tmp_path):  # noqa: F811
    """The whole way: the job's working_dir carries the file at its top, the job's tune-lab imports it
    (--labs mycnn.py) and its trials import it from the working_dir, which Ray puts on their path."""
    lab = own_lab(tmp_path / "labs")
    root = tmp_path / "results"
    began = time.monotonic()
    done = tune_lab("--labs", str(lab), "submit", "--address", head, "--wait", "mycnn", "--search",
                    str(write_search(tmp_path)), "--data-dir", str(tiny_mnist), "--storage", str(root),
                    "--experiment", "job", cwd=tmp_path)
    print(f"submitted search of the own lab: {time.monotonic() - began:.1f} s")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    summary = json.loads((root / "job" / "summary.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["completed", "completed"]
    assert summary["lab_source"].endswith("/mycnn.py")  # where the job found it


class _Spec:
    def __init__(self, source: str, module: str) -> None:
        self.source, self.module = source, module
