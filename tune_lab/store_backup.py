"""A cluster's MLflow store outlives the cluster: copied to the results bucket, restored by the next `ray up`.

The head's MLflow server keeps every run's history in SQLite on the head's disk, and `ray down`
deletes that disk. cluster.yaml therefore restores the store from the bucket before the server
starts (`restore`), and keeps a copy there while the head runs (`keep`: every few minutes, and
once more when the head shuts down, which `ray down` does cleanly). `backup` makes one copy now.

    python -m tune_lab.store_backup restore ~/mlflow.db s3://BUCKET/tune-lab/mlflow/mlflow.db
    python -m tune_lab.store_backup keep ~/mlflow.db s3://BUCKET/tune-lab/mlflow/mlflow.db --every 300
    python -m tune_lab.store_backup backup ~/mlflow.db s3://BUCKET/tune-lab/mlflow/mlflow.db

The copy is SQLite's online backup, consistent while the server writes. Where the copy goes is any
URI pyarrow's filesystems take (s3://, gs://, file://, a local path), the layer Ray's storage uses.
"""
from __future__ import annotations

import argparse
import signal
import sqlite3
import sys
import tempfile
import threading
from pathlib import Path

from trainables.files import written_whole


def _filesystem(uri: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def backup(db: Path, uri: str) -> None:
    """Copy the live database `db` to `uri`, replacing the previous copy only once the new one is whole."""
    with tempfile.TemporaryDirectory(prefix="tune-lab-store-") as tmp:
        snapshot = Path(tmp) / "mlflow.db"
        source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(snapshot)
            with target:
                source.backup(target)
            target.close()
        finally:
            source.close()
        fs, path = _filesystem(uri)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path + ".partial") as out, open(snapshot, "rb") as data:
            while chunk := data.read(1 << 20):
                out.write(chunk)
        fs.move(path + ".partial", path)


def restore(uri: str, db: Path) -> str:
    """Bring the copy at `uri` back to `db` before MLflow starts; what was done, in one line.

    A store already on disk is never overwritten (a second `ray up` on a running head must not
    replace the live store with an older copy). A missing copy starts a new store; any other
    failure raises, so the head's setup fails loudly instead of starting an empty store that
    the next backup would write over the real history.
    """
    import pyarrow.fs

    if db.exists():
        return f"{db} exists: kept, not restored from {uri}"
    fs, path = _filesystem(uri)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return f"no copy at {uri} yet: MLflow starts a new store in {db}"
    with written_whole(db) as partial:  # an unsound copy raises below: removed, nothing written to db
        with fs.open_input_stream(path) as data, open(partial, "wb") as out:
            while chunk := data.read(1 << 20):
                out.write(chunk)
        check = sqlite3.connect(partial)
        try:
            verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            check.close()
        if verdict != "ok":
            raise RuntimeError(f"the copy at {uri} is not a sound SQLite database ({verdict}); {db} not written")
    return f"restored {db} from {uri}"


def keep(db: Path, uri: str, every: float, stop: threading.Event) -> int:
    """Back up `db` every `every` seconds while it changes, and once more when `stop` is set
    (on SIGTERM: a shutting-down head); returns the number of copies made."""
    made, last = 0, None
    while True:
        stopping = stop.wait(every)
        if db.exists():
            state = (db.stat().st_mtime_ns, db.stat().st_size)
            wal = db.with_name(db.name + "-wal")
            if wal.exists():
                state += (wal.stat().st_mtime_ns, wal.stat().st_size)
            if state != last or stopping:
                backup(db, uri)
                made, last = made + 1, state
        if stopping:
            return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tune_lab.store_backup", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["backup", "restore", "keep"])
    parser.add_argument("db", type=Path, help="the MLflow SQLite file, e.g. ~/mlflow.db")
    parser.add_argument("uri", help="where its copy lives, e.g. s3://BUCKET/tune-lab/mlflow/mlflow.db")
    parser.add_argument("--every", type=float, default=300, help="keep: seconds between copies (default 300)")
    args = parser.parse_args(argv)
    db = args.db.expanduser().resolve()
    if args.action == "restore":
        print(f"tune-lab: {restore(args.uri, db)}", flush=True)
    elif args.action == "backup":
        backup(db, args.uri)
        print(f"tune-lab: {db} copied to {args.uri}", flush=True)
    else:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        print(f"tune-lab: copying {db} to {args.uri} every {args.every:g} s and at shutdown", flush=True)
        made = keep(db, args.uri, args.every, stop)
        print(f"tune-lab: stopped after {made} copies; the last is at {args.uri}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
