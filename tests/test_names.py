"""A name stays a name (issue 34): on a shared head every student's results live under one root."""
from __future__ import annotations

import pytest

import tune_lab
from tune_lab.cli import main
from tune_lab.jobs import new_job_id


def ours(err: str) -> list[str]:
    """What tune-lab said on stderr (the session's Ray may log a line of its own meanwhile); never a traceback."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("tune-lab")]


@pytest.mark.parametrize("name", ["../escape", "/some/abs/path", ".hidden", "a/b", "", "two words"])
def test_an_experiment_that_is_not_a_plain_name_is_one_line_and_writes_nothing(name, tmp_path, capsys):
    root = tmp_path / "results"
    for argv in (["mlp", "--search", "optimizer", "--storage", str(root), "--experiment", name],
                 ["submit", "--address", "http://127.0.0.1:9", "mlp", "--search", "optimizer", "--experiment", name],
                 ["reproduce", "lab1", "--storage", str(root), "--experiment", name]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = ours(capsys.readouterr().err)
        assert exit_.value.code == 2 and len(err) == 1, err
        assert "is not a plain name: use letters, digits" in err[0] and "--help" in err[0]
    with pytest.raises(tune_lab.TuneLabError, match="is not a plain name"):
        tune_lab.search("mlp", "optimizer", storage=str(root), experiment=name)
    assert not root.exists() and not (tmp_path / "escape").exists()


def test_a_results_root_that_cannot_be_made_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for root in (blocker / "results", "/proc/tune-lab-results"):
        assert main(["mlp", "--search", "optimizer", "--storage", str(root)]) == 2
        err = ours(capsys.readouterr().err)
        assert len(err) == 1 and f"--storage {root}: cannot make or write the results folder there" in err[0], err
    assert not (blocker.parent / "results").exists()


def test_job_ids_are_unique_without_asking_the_cluster_and_say_whose():
    ids = {new_job_id("mlp", "optimizer", "student3") for _ in range(100)}  # a class, in the same second
    assert len(ids) == 100
    assert all(i.startswith("tune-lab-mlp-optimizer-student3-") for i in ids)
    assert "/" not in new_job_id("mlp", "optimizer", None)  # the local user's name, made safe


class RefusingClient:
    """Ray's JobSubmissionClient as a head answers while it starts: `refusals` errors, then a job."""

    def __init__(self, *refusals: str) -> None:
        self.refusals, self.ids = list(refusals), []

    def submit_job(self, *, submission_id: str, **_: object) -> str:
        self.ids.append(submission_id)
        if self.refusals:
            raise RuntimeError(f"Request failed with status code 500: {self.refusals.pop(0)}")
        return submission_id


def test_submit_takes_a_new_id_after_a_collision_and_waits_for_a_starting_agent(monkeypatch, capsys):
    from tune_lab import jobs

    monkeypatch.setattr(jobs, "AGENT_RETRY_S", 0.01)
    client = RefusingClient("Job with submission_id X already exists", "No available agent to submit job, please try again later.")
    monkeypatch.setattr(jobs, "connect", lambda address: client)
    _, job_id = jobs.submit(None, "mlp", "optimizer", ["--subset", "10"], "student3")
    assert job_id == client.ids[-1] and len(set(client.ids)) == 3
    assert capsys.readouterr().err.count("job agent is not up yet") == 1

    monkeypatch.setattr(jobs, "AGENT_WAIT_S", 0.05)
    monkeypatch.setattr(jobs, "connect", lambda address: RefusingClient(*["No available agent to submit job"] * 100))
    with pytest.raises(tune_lab.TuneLabError, match="no job agent answered on the head in 0.05 s"):
        jobs.submit(None, "mlp", "optimizer", [], None)
    monkeypatch.setattr(jobs, "connect", lambda address: RefusingClient("Traceback (most recent call last):\n  ...\nValueError: bad entrypoint"))
    with pytest.raises(tune_lab.TuneLabError, match="^submit: the cluster refused the job: ValueError: bad entrypoint$"):
        jobs.submit(None, "mlp", "optimizer", [], None)
