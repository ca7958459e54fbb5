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

A class outgrows SQLite (one writer at a time): its server moves to PostgreSQL, and `migrate` copies
an existing store there, every table row for row, and checks that the runs, params and metrics
counted in both are equal (MLflow has no SQLite-to-PostgreSQL tool of its own; `mlflow db upgrade`
only moves a schema forward, which `migrate` does first, on both sides):

    python -m tune_lab.store_backup migrate ~/mlflow.db postgresql://mlflow@127.0.0.1:5432/mlflow
"""
from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import tempfile
import threading
from pathlib import Path

from labspec.files import filesystem, written_whole


def is_postgres(db: str | Path) -> bool:
    return str(db).startswith(("postgresql://", "postgresql+psycopg2://", "postgres://"))


def libpq(db: str) -> str:
    """A SQLAlchemy URL of PostgreSQL as pg_dump and pg_restore take it (no +driver)."""
    return "postgresql://" + str(db).split("://", 1)[1]


def pg_program(name: str) -> str:
    """pg_dump / pg_restore: on PATH (Ubuntu's wrappers pick the server's version), else Debian's own folder."""
    import glob
    import shutil

    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"{name} not found: install PostgreSQL's client programs (apt-get install postgresql-client)")
    return found


def _upload(local: Path, uri: str) -> None:
    """`local` to `uri`, replacing the previous copy only once the new one is whole."""
    fs, path = filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path + ".partial") as out, open(local, "rb") as data:
        while chunk := data.read(1 << 20):
            out.write(chunk)
    fs.move(path + ".partial", path)


def backup(db: Path | str, uri: str) -> None:
    """Copy the live database `db` to `uri`, replacing the previous copy only once the new one is whole.
    A PostgreSQL store (a class's server) goes as pg_dump's custom format: consistent while the server writes."""
    if is_postgres(db):
        import subprocess

        with tempfile.TemporaryDirectory(prefix="tune-lab-store-") as tmp:
            dump = Path(tmp) / "mlflow.pgdump"
            done = subprocess.run([pg_program("pg_dump"), "--format=custom", "--no-owner", f"--file={dump}", libpq(str(db))],
                                  capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"pg_dump of {_safe(str(db))} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            _upload(dump, uri)
        return
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
        _upload(snapshot, uri)


def _pg_runs(db: str) -> int | None:
    """Runs in the PostgreSQL store (None: MLflow's tables are not there yet)."""
    import sqlalchemy as sa

    engine = sa.create_engine(with_driver(db))
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("runs"):
                return None
            return conn.execute(sa.text("SELECT count(*) FROM runs")).scalar()
    finally:
        engine.dispose()


def restore_postgres(uri: str, db: str) -> str:
    """restore() for a PostgreSQL store: pg_restore of the copy into a database without MLflow's tables."""
    import subprocess

    import pyarrow.fs

    if _pg_runs(db) is not None:
        return f"{_safe(db)} has MLflow's tables: kept, not restored from {uri}"
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return f"no copy at {uri} yet: MLflow starts a new store in {_safe(db)}"
    with tempfile.TemporaryDirectory(prefix="tune-lab-store-") as tmp:
        dump = Path(tmp) / "mlflow.pgdump"
        with fs.open_input_stream(path) as data, open(dump, "wb") as out:
            while chunk := data.read(1 << 20):
                out.write(chunk)
        done = subprocess.run([pg_program("pg_restore"), "--no-owner", "--single-transaction", "--exit-on-error",
                               f"--dbname={libpq(db)}", str(dump)], capture_output=True, text=True)
    if done.returncode:  # one transaction: nothing of an unsound copy stays in the database
        raise RuntimeError(f"the copy at {uri} could not be restored into {_safe(db)}: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return f"restored {_safe(db)} from {uri} ({_pg_runs(db)} runs)"


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
    fs, path = filesystem(uri)
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


def _pg_changes(db: str) -> tuple:
    """A count that grows with every write to the PostgreSQL store (rows inserted, updated, deleted)."""
    import sqlalchemy as sa

    engine = sa.create_engine(with_driver(db))
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(sa.text("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
                                              "FROM pg_stat_user_tables")).one())
    finally:
        engine.dispose()


def keep(db: Path | str, uri: str, every: float, stop: threading.Event) -> int:
    """Back up `db` every `every` seconds while it changes, and once more when `stop` is set
    (on SIGTERM: a shutting-down head); returns the number of copies made."""
    made, last = 0, None
    while True:
        stopping = stop.wait(every)
        if is_postgres(db):
            state = _pg_changes(str(db))
            if state != last or stopping:
                backup(db, uri)
                made, last = made + 1, state
        elif db.exists():
            state = (db.stat().st_mtime_ns, db.stat().st_size)
            wal = db.with_name(db.name + "-wal")
            if wal.exists():
                state += (wal.stat().st_mtime_ns, wal.stat().st_size)
            if state != last or stopping:
                backup(db, uri)
                made, last = made + 1, state
        if stopping:
            return made


COUNTED = ("experiments", "runs", "params", "metrics", "latest_metrics", "tags")  # what `migrate` checks equal


def migrate(source: str, target: str, batch: int = 5000) -> dict[str, int]:
    """Copy the MLflow store `source` (sqlite:///...) into the empty database `target`
    (postgresql://...); the rows of each table counted in COUNTED, equal on both sides.

    Both schemas are first brought to this MLflow's own (its SqlAlchemyStore runs the alembic
    migrations), so the tables match column for column; the rows then go over in the order of
    their foreign keys, and PostgreSQL's id sequences are moved past the copied ids (MLflow's next
    experiment id must not collide with a copied one). A target that already has runs is refused:
    a second migration would double them.
    """
    import sqlalchemy as sa
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    target = with_driver(target)
    probe = sa.create_engine(target)  # one try: MLflow's own engine retries an absent server for ~100 s
    try:
        with probe.connect():
            pass
    finally:
        probe.dispose()
    for name in ("mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    for uri in (source, target):
        SqlAlchemyStore(uri, tempfile.gettempdir())  # creates or upgrades the schema; nothing else
    src, dst = sa.create_engine(source), sa.create_engine(target)
    try:
        src_meta, dst_meta = sa.MetaData(), sa.MetaData()
        src_meta.reflect(src)
        dst_meta.reflect(dst)
        with dst.connect() as conn:
            if conn.execute(sa.text("SELECT count(*) FROM runs")).scalar():
                raise RuntimeError(f"migrate: {_safe(target)} already has runs; migrate into an empty database")
        with src.connect() as read, dst.begin() as write:
            for table in reversed(dst_meta.sorted_tables):  # the rows a new store starts with (Default experiment,
                if table.name != "alembic_version":         # workspace): the source has its own
                    write.execute(table.delete())
            for table in dst_meta.sorted_tables:
                if table.name == "alembic_version" or table.name not in src_meta.tables:
                    continue
                columns = [c.name for c in table.columns if c.name in src_meta.tables[table.name].columns]
                booleans = {c.name for c in table.columns if isinstance(c.type, sa.Boolean)}
                rows = read.execute(sa.select(*(src_meta.tables[table.name].c[name] for name in columns)))
                while chunk := rows.fetchmany(batch):
                    write.execute(table.insert(), [
                        {k: (bool(v) if k in booleans and v is not None else v) for k, v in zip(columns, row)}
                        for row in chunk])
            for table in dst_meta.sorted_tables:  # serial ids: next one after the copied ones
                for column in table.primary_key.columns:
                    if column.autoincrement is True or (column.autoincrement == "auto" and isinstance(column.type, sa.Integer)):
                        sequence = write.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                                                 {"t": table.name, "c": column.name}).scalar()
                        if sequence:
                            write.execute(sa.text(f"SELECT setval('{sequence}', COALESCE((SELECT max({column.name}) "
                                                  f"FROM {table.name}), 0) + 1, false)"))
        counts = {}
        with src.connect() as a, dst.connect() as b:
            for name in COUNTED:
                there, here = (c.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar() for c in (a, b))
                if there != here:
                    raise RuntimeError(f"migrate: {name} has {there} rows in {source} but {here} in {_safe(target)}")
                counts[name] = here
        return counts
    finally:
        src.dispose()
        dst.dispose()


def with_driver(uri: str) -> str:
    """postgresql://... with the driver that is installed: SQLAlchemy 2.1 means psycopg 3 by a bare
    `postgresql://`, and tune-lab installs psycopg2 (psycopg2-binary, the driver MLflow documents)."""
    if uri.startswith("postgresql://"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "postgresql+psycopg2://" + uri.removeprefix("postgresql://")
    return uri


def _safe(uri: str) -> str:
    """A database URI without its password, for a message."""
    import sqlalchemy as sa

    return sa.engine.make_url(uri).render_as_string(hide_password=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tune_lab.store_backup", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["backup", "restore", "keep", "migrate"])
    parser.add_argument("db", help="the MLflow store: its SQLite file (~/mlflow.db), or a PostgreSQL database "
                        "(postgresql+psycopg2:///mlflow: the head's own, through its socket)")
    parser.add_argument("uri", help="where its copy lives, e.g. s3://BUCKET/tune-lab/mlflow/mlflow.db; "
                        "migrate: the PostgreSQL database, postgresql://USER@HOST:PORT/DB")
    parser.add_argument("--every", type=float, default=300, help="keep: seconds between copies (default 300)")
    args = parser.parse_args(argv)
    if is_postgres(args.db):
        if args.action in ("migrate",):
            print("tune-lab: migrate: DB is the SQLite file; the PostgreSQL database is the second argument", file=sys.stderr)
            return 2
        db: Path | str = args.db
    else:
        db = Path(args.db).expanduser().resolve()
    if args.action == "restore" and is_postgres(db):
        try:
            print(f"tune-lab: {restore_postgres(args.uri, str(db))}", flush=True)
        except RuntimeError as exc:
            print(f"tune-lab: {exc}", file=sys.stderr)
            return 1
    elif args.action == "migrate":
        if not db.is_file():
            print(f"tune-lab: migrate: no SQLite store at {db}", file=sys.stderr)
            return 2
        import sqlalchemy.exc
        from mlflow.exceptions import MlflowException

        try:
            counts = migrate(f"sqlite:///{db}", args.uri)
        except RuntimeError as exc:
            print(f"tune-lab: {exc}", file=sys.stderr)
            return 1
        except (sqlalchemy.exc.SQLAlchemyError, MlflowException, ImportError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"tune-lab: migrate into {_safe(args.uri)}: {first}", file=sys.stderr)
            return 1
        print(f"tune-lab: {db} copied into {_safe(args.uri)}: "
              + ", ".join(f"{n} {name}" for name, n in counts.items()) + " (equal on both sides)", flush=True)
    elif args.action == "restore":
        print(f"tune-lab: {restore(args.uri, db)}", flush=True)
    elif args.action == "backup":
        backup(db, args.uri)
        print(f"tune-lab: {_safe(str(db)) if is_postgres(db) else db} copied to {args.uri}", flush=True)
    else:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        print(f"tune-lab: copying {_safe(str(db)) if is_postgres(db) else db} to {args.uri} every {args.every:g} s "
              f"and at shutdown", flush=True)
        made = keep(db, args.uri, args.every, stop)
        print(f"tune-lab: stopped after {made} copies; the last is at {args.uri}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
