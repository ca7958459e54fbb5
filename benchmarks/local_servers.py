"""The class's servers on one machine, each started by its process id and ended by it: PostgreSQL
(its own data directory, loopback only), MLflow's tracking server, a Ray head with token auth.

Why here: the class-load benchmark (benchmarks/class_load.py) and the tests that need the real
parts (tests/test_pg_store.py, tests/test_class_load.py) start the same servers the same way, as a
cluster's admin does, and never touch anyone else's (nothing that ends every Ray process on the
machine, no `pg_ctl` on a shared data directory). PostgreSQL refuses to run as root; as root (CI's container) it runs as Debian's
`postgres` user.
"""
from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them off PATH), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def postgres_missing() -> str | None:
    """Why PostgreSQL cannot be started here (a skip reason), or None when it can."""
    folder = postgres_bin()
    if folder is None:
        return "no PostgreSQL server here (initdb not found; CI installs Debian's postgresql)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    try:
        import psycopg2  # noqa: F401  MLflow's PostgreSQL driver
    except ImportError:
        return "psycopg2 is not installed (pip install -e '.[test]')"
    return None


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL will not run as root: as root, run it as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class Postgres:
    uri: str  # postgresql+psycopg2://postgres@127.0.0.1:PORT/mlflow (psycopg2: the driver tune-lab installs)
    port: int
    folder: Path
    process: subprocess.Popen

    def database(self, name: str) -> str:
        """A new, empty database on this server; its URI."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        connection.autocommit = True
        try:
            connection.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"


@contextlib.contextmanager
def postgres(database: str = "mlflow") -> Iterator[Postgres]:
    """A PostgreSQL server of its own on 127.0.0.1 (trust auth, loopback only), in a fresh data
    directory; stopped by its process id and its folder removed at the end."""
    reason = postgres_missing()
    if reason:
        raise RuntimeError(reason)
    folder = Path(tempfile.mkdtemp(prefix="tl-pg-", dir="/tmp"))
    folder.chmod(0o755)  # the postgres user must reach its data directory
    data = folder / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    binaries = postgres_bin()
    subprocess.run(_as_postgres([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                 "--encoding=UTF8", "--no-sync"]), check=True, capture_output=True, text=True)
    log = (folder / "postgres.log").open("w")
    if os.geteuid() == 0:
        shutil.chown(folder / "postgres.log", "postgres", "postgres")
    process = subprocess.Popen(
        _as_postgres([str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                      "-k", str(data), "-c", "max_connections=300", "-c", "fsync=off"]),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_postgres(port, process, folder)
        server = Postgres("", port, folder, process)
        server.uri = server.database(database)
        yield server
    finally:
        _end(process, signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_postgres(port: int, process: subprocess.Popen, folder: Path, seconds: float = 60) -> None:
    import psycopg2

    deadline = time.time() + seconds
    while True:
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2).close()
            return
        except psycopg2.OperationalError:
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(folder / 'postgres.log').read_text()[-1500:]}")
            time.sleep(0.3)


def _end(process: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 30) -> None:
    """End a server this module started, and its children, by its process group."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class MlflowServer:
    """`mlflow server` as the class's head runs it (its job runner off: no huey processes left
    behind), startable again on the same port: a server that blinks."""

    def __init__(self, backend: str, artifacts: Path, port: int | None = None, workers: int = 2) -> None:
        self.backend, self.artifacts, self.port, self.workers = backend, artifacts, port or free_port(), workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix="tl-mlflow-", suffix=".log")[1])

    def start(self, seconds: float = 120) -> "MlflowServer":
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend-store-uri", self.backend, "--artifacts-destination", str(self.artifacts),
                   "--workers", str(self.workers)]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_http(f"{self.url}/health", seconds, self.process, self.log)
        return self

    def stop(self) -> None:
        if self.process is not None:
            _end(self.process)
            self.process = None

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


def wait_for_http(url: str, seconds: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Until `url` answers at all (a 401 is an answer), or a line saying why not."""
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if (process is not None and process.poll() is not None) or time.time() > deadline:
                tail = log.read_text()[-1500:] if log and log.exists() else ""
                raise RuntimeError(f"{url} did not answer in {seconds:g} s: {tail}")
            time.sleep(0.5)


def _wait_for_jobs_api(url: str, token: str, process: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    """Until the head lists jobs for the token (its job agent and API up), not only answers: a head that
    answered /api/version under load still refused the first submissions (benchmarks/class_load.py)."""
    deadline = time.time() + seconds
    request = urllib.request.Request(f"{url}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the Ray head's jobs API at {url} did not answer in {seconds:g} s: {log.read_text()[-1500:]}")
        time.sleep(1)


@contextlib.contextmanager
def ray_head(cpus: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """A one-node Ray cluster of our own, token auth on, dashboard on 127.0.0.1; its dashboard URL.
    `env` is the head's environment as an admin sets it (e.g. the per-job trial cap); the token
    is put in this process's RAY_AUTH_TOKEN while it runs (the submitter's side)."""
    temp = Path(tempfile.mkdtemp(prefix="tlh-", dir="/tmp"))  # short: Ray's sockets live under it
    token = secrets.token_hex(32)
    dashboard = free_port()
    head_env = {**os.environ, **(env or {}), "RAY_TMPDIR": str(temp), "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": token, "PATH": os.pathsep.join((str(BIN), os.environ["PATH"]))}
    command = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", str(cpus),
               "--port", str(free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
               "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
               "--disable-usage-stats"]
    log = (temp / "head.log").open("w")
    process = subprocess.Popen(command, env=head_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{dashboard}"
    before = os.environ.get("RAY_AUTH_TOKEN")
    try:
        wait_for_http(f"{url}/api/version", 120, process, temp / "head.log")
        _wait_for_jobs_api(url, token, process, temp / "head.log")
        os.environ["RAY_AUTH_TOKEN"] = token
        yield url
    finally:
        if before is None:
            os.environ.pop("RAY_AUTH_TOKEN", None)
        else:
            os.environ["RAY_AUTH_TOKEN"] = before
        process.terminate()  # --block: the head stops the processes it started
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(temp, ignore_errors=True)
