"""Searches submitted to a Ray cluster as Ray Jobs, from a laptop: submit, list, follow, stop.

The job's entrypoint is tune-lab itself, run on the head with `--address auto`; the code it runs
travels in the job's runtime environment (a `working_dir` staged from this installation: the four
packages and, when the search is the user's own file, that file; when the lab is the user's own
(--labs), its file or package, which the job's command imports with --labs). Everything goes through Ray's
public `JobSubmissionClient`, over the dashboard's HTTP port, which tune-lab never asks anyone to
open to the world: the README reaches it through an SSH tunnel (`ray dashboard cluster.yaml`).
"""
from __future__ import annotations

import asyncio
import datetime
import importlib
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tune_lab.usage import UsageError

STAGED_SEARCHES = "submitted"  # where a user's own search file goes in the staged working_dir
# Where a submitted search's results go when --storage is not given: the head's own default,
# not the job's working_dir (Ray deletes that).
CLUSTER_STORAGE = "${TUNE_LAB_HOME:-$HOME/tune-lab-results}"
TOKEN_FILE = Path("~/.ray/auth_token")
# A search queues one trial at a time for resources: with Tune's default queue, the first search
# submitted took every CPU that came free until its last trial had started, and the second waited.
SHARED_CLUSTER_ENV = {"TUNE_MAX_PENDING_TRIALS_PG": "1"}
OWNER_ENV = "TUNE_LAB_OWNER"  # whose search: the job's metadata, and its MLflow runs' mlflow.user (tune_lab.tracking)
JOB_COLUMNS = ("job", "owner", "lab", "search", "status", "start", "duration")  # `tune-lab jobs`, a JobRow each
EXIT_STOPPED = 130


def dashboard_address(explicit: str | None) -> str:
    """--address, else $RAY_API_SERVER_ADDRESS, else $RAY_ADDRESS (as `ray job` reads them)."""
    address = explicit or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UsageError("no cluster given: pass --address http://HEAD:8265 (or set RAY_ADDRESS); "
                        "for a remote cluster, `ray dashboard cluster.yaml` tunnels it to http://127.0.0.1:8265")
    return address if "://" in address else f"http://{address}"


def ray_token() -> str | None:
    """Ray's token, from where Ray's own tools look: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or TOKEN_FILE).expanduser()
    return path.read_text().strip() if path.is_file() else None


def connect(address: str | None) -> Any:
    """A JobSubmissionClient on the cluster's dashboard, sending Ray's token where there is one."""
    from tune_lab.ray_internals import require_tested_ray

    require_tested_ray()
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    logging.getLogger("ray").setLevel(logging.WARNING)  # not a line per packaged file or closed socket
    url = dashboard_address(address)
    token = ray_token()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(url, headers=headers)
    except AuthenticationError:
        raise UsageError(f"{url} wants Ray's token: copy the head's ~/.ray/auth_token to this machine's "
                        f"(or set RAY_AUTH_TOKEN)") from None
    except (ConnectionError, OSError) as exc:
        raise UsageError(f"nothing answers at {url} ({type(exc).__name__}); is the cluster up, and its dashboard "
                        f"tunnelled here (`ray dashboard cluster.yaml`)?") from None


def stage(search_arg: str, lab: str, folder: Path) -> str:
    """Copy the code (and a user's own search file) into `folder`; the --search value the job uses."""
    from tune_lab.spaces import SEARCH_DIR, search_path
    from tune_lab.user_labs import OWN_PACKAGES

    for package in OWN_PACKAGES:
        source = Path(importlib.import_module(package).__file__).parent
        shutil.copytree(source, folder / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    path = search_path(lab, search_arg)
    if path.parent.parent == SEARCH_DIR:
        return search_arg  # a shipped search travels with the code
    (folder / STAGED_SEARCHES).mkdir()
    shutil.copy2(path, folder / STAGED_SEARCHES / path.name)
    return f"{STAGED_SEARCHES}/{path.name}"


def stage_labs(lab: str, folder: Path) -> list[str]:
    """Copy a lab of the user's own (tune_lab.user_labs: its --labs file, or its module's package) to the
    top of `folder`, the job's working_dir, which Ray puts on the path of every process of the job, its
    trials' included (and which is the driver's working directory); the --labs values the job passes."""
    from tune_lab import user_labs

    values = []
    for item in user_labs.staged_labs(lab):
        for path in map(Path, user_labs.ship_paths([item])):
            if path.is_dir():
                shutil.copytree(path, folder / path.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(path, folder / path.name)
        values.append(item.file.name if item.file is not None else item.module)
    return values


def without_labs(options: list[str]) -> list[str]:
    """The search options but --labs (the job gets the staged files' names instead)."""
    out, skip = [], False
    for word in options:
        if skip:
            skip = False
            continue
        if word in ("--labs", "--lab"):
            skip = True
        elif not word.startswith(("--labs=", "--lab=")):
            out.append(word)
    return out


def entrypoint(lab: str, search_arg: str, options: list[str], labs: list[str] | tuple[str, ...] = ()) -> str:
    """The command the head runs: tune-lab, joined to the cluster it runs on."""
    import shlex

    has_storage = any(o == "--storage" or o.startswith("--storage=") for o in options)
    storage = [] if has_storage else ["--storage", CLUSTER_STORAGE]
    imports = [word for value in labs for word in ("--labs", value)]
    words = ["python", "-m", "tune_lab", *imports, lab, "--search", search_arg, *without_labs(options)]
    return " ".join(shlex.quote(w) for w in words) + " " + " ".join(storage + ["--address", "auto"])


def owner() -> str:
    """Who submits: $TUNE_LAB_OWNER (a class's student name, when the laptop's login is not it), else the
    login. Every job on a shared head runs as the head's one user, so whose it is travels with the job."""
    import getpass

    return (os.environ.get(OWNER_ENV) or "").strip() or getpass.getuser()


def submit(address: str | None, lab: str, search_arg: str, options: list[str],
           experiment: str | None = None) -> tuple[Any, str]:
    """Submit the search; (client, job id). The job id names the lab, the search and whose it is (`new_job_id`)."""
    client = connect(address)
    name = Path(search_arg).stem
    with tempfile.TemporaryDirectory(prefix="tune-lab-job-") as folder:
        staged = stage(search_arg, lab, Path(folder))
        labs = stage_labs(lab, Path(folder))
        attempts, waited_since, who = 0, None, owner()
        while True:
            attempts += 1
            job_id = new_job_id(lab, name, experiment)
            try:
                client.submit_job(entrypoint=entrypoint(lab, staged, options, labs), submission_id=job_id,
                                  runtime_env={"working_dir": folder, "env_vars": {**SHARED_CLUSTER_ENV, OWNER_ENV: who}},
                                  metadata={"tune_lab": "1", "lab": lab, "search": name, "owner": who})
                return client, job_id
            except (ConnectionError, OSError) as exc:  # requests' ConnectionError is an OSError
                # A head under load dropped the upload or the call (seen with ten students at once on a busy
                # 2-core head): whether the job was made is unknown, so say so rather than submit it twice.
                raise UsageError(f"submit: the cluster's dashboard at {dashboard_address(address)} closed the "
                                 f"connection ({type(exc).__name__}); see `tune-lab jobs` for whether {job_id} was "
                                 f"submitted before submitting again") from None
            except RuntimeError as exc:  # the job API's refusals, a Ray traceback each: one line here
                if "already exists" in str(exc) and attempts < SUBMIT_ATTEMPTS:
                    continue  # another submission took this id (the same second, the same 32 random bits)
                if "No available agent" not in str(exc):
                    raise UsageError(f"submit: the cluster refused the job: {_last_line(exc)}") from None
                # The head's job agent is still starting (or another Ray on the head holds its port).
                if waited_since is None:
                    waited_since = time.monotonic()
                    print(f"tune-lab: the cluster's job agent is not up yet; trying again for up to "
                          f"{AGENT_WAIT_S} s", file=sys.stderr, flush=True)
                if time.monotonic() - waited_since > AGENT_WAIT_S:
                    raise UsageError(f"submit: no job agent answered on the head in {AGENT_WAIT_S} s: the head is "
                                     f"still starting, or another Ray on it holds the agent's port (see the head's "
                                     f"dashboard_agent.log)") from None
                time.sleep(AGENT_RETRY_S)


SUBMIT_ATTEMPTS = 3  # new ids after an "already exists"
AGENT_WAIT_S, AGENT_RETRY_S = 60, 2  # "No available agent to submit job": a head still starting


def new_job_id(lab: str, search: str, experiment: str | None) -> str:
    """Unique without asking the cluster (a class submits the same search in the same second: 32 random bits
    make two of 100 such ids alike about once in a million classes, and `submit` then takes another), and
    still readable: the lab, the search, whose (the experiment's name, else the owner) and when."""
    import secrets

    who = "".join(c if c.isalnum() or c in "-_" else "_" for c in (experiment or owner()))
    return f"tune-lab-{lab}-{search}-{who}-{datetime.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


@dataclass
class JobRow:
    id: str
    owner: str
    lab: str
    search: str
    status: str
    start: str
    duration: str


def tune_lab_jobs(client: Any) -> list[JobRow]:
    """tune-lab's jobs on the cluster, oldest first."""
    rows = []
    now_ms = time.time() * 1000
    for job in sorted(client.list_jobs(), key=lambda j: j.start_time or 0):
        meta = job.metadata or {}
        if meta.get("tune_lab") != "1":
            continue
        start = datetime.datetime.fromtimestamp(job.start_time / 1000) if job.start_time else None
        seconds = ((job.end_time or now_ms) - job.start_time) / 1000 if job.start_time else 0
        rows.append(JobRow(job.submission_id, meta.get("owner", ""), meta.get("lab", ""), meta.get("search", ""), str(job.status.value),
                           f"{start:%Y-%m-%d %H:%M:%S}" if start else "", f"{seconds:.0f} s"))
    return rows


def job_info(client: Any, job_id: str) -> Any:
    try:
        return client.get_job_info(job_id)
    except RuntimeError as exc:
        if "does not exist" in str(exc) or "404" in str(exc):
            raise UsageError(f"no job {job_id!r} on this cluster; `tune-lab jobs` lists them") from None
        raise


def follow(client: Any, job_id: str) -> Iterator[str]:
    """The job's log as it grows, until the job ends."""
    stream = client.tail_job_logs(job_id).__aiter__()
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


def exit_code(info: Any) -> int:
    """What `--wait` exits with: the search's own exit code where the job ran it to the end."""
    status = str(info.status.value)
    if status == "SUCCEEDED":
        return 0
    if status == "STOPPED":
        return EXIT_STOPPED
    return info.driver_exit_code if info.driver_exit_code not in (None, 0) else 1
