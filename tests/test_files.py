"""Files written whole (labspec/files.py): results, rung tables and caches never seen half-written."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from labspec.files import write_bytes_whole, written_whole

ROOT = Path(__file__).resolve().parents[1]


def test_a_write_that_fails_leaves_the_old_file_and_nothing_beside_it(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk went away"), written_whole(target) as partial:
        partial.write_text("half of the new")
        raise RuntimeError("disk went away")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_folder_is_made_and_nothing_is_left_beside_the_file(tmp_path):
    target = tmp_path / "new" / "folder" / "state.json"
    write_bytes_whole(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_a_writer_killed_mid_write_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "rungs.json"
    target.write_text("old")
    started = tmp_path / "started"
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from labspec.files import written_whole\n"
        "with written_whole(sys.argv[1]) as partial, open(partial, 'wb') as out:\n"
        "    out.write(b'x' * 1_000_000); out.flush()\n"
        "    Path(sys.argv[2]).touch()\n"
        "    time.sleep(60)\n"
    ), str(target), str(started)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert writer.poll() is None, "the writer ended before it was killed"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.05)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    assert target.read_text() == "old"
    write_bytes_whole(target, b"new")  # the next write is not hindered by what the killed one left
    assert target.read_bytes() == b"new"


def test_two_writers_of_one_file_leave_one_whole_copy_for_every_reader(tmp_path):
    """Two threads of one driver (or two searches sharing a cache) replacing the same file while a third reads it."""
    target = tmp_path / "decoded.npz"
    payloads = [b"a" * 300_000, b"b" * 300_000]
    write_bytes_whole(target, payloads[0])
    errors: list[BaseException] = []
    done = threading.Event()

    def write(payload: bytes) -> None:
        try:
            for _ in range(60):
                write_bytes_whole(target, payload)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    def read() -> None:
        while not done.is_set():
            data = target.read_bytes()
            if data not in payloads:
                errors.append(AssertionError(f"a reader saw {len(data)} bytes that no writer wrote whole"))
                return

    writers = [threading.Thread(target=write, args=(p,)) for p in payloads]
    reader = threading.Thread(target=read)
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    assert errors == []
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["decoded.npz"]
