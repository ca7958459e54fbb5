"""Files written whole: whoever reads one sees the old content or the new, never half of it.

Several writers need that: a driver killed mid-write (`kill -9`, a preempted head) must not leave a
results file or a scheduler's rung table cut short for `tune-lab resume`, and two searches filling
the same cache (decoded datasets, the reference classifier) must not read each other's half-written
copy. The new content goes to a file beside the target, named after the process and thread that
write it, and takes the target's place in one `os.replace` (atomic on one file system). Two writers
of one file therefore each rename a complete file of their own: the last one wins.

A results root may also be a URI (s3://, gs://, file://): `is_remote` tells it from a path, for every
module alike, and `filesystem` opens it with pyarrow, the layer Ray Tune's own storage writes with.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs


@contextlib.contextmanager
def written_whole(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A path beside `path` to write the new content to; it replaces `path` when the block ends cleanly.

    If the block raises, the partial file is removed and `path` is left as it was. The target's folder
    is made if missing (an OSError from that, or from the write, reaches the caller).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.partial")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def write_bytes_whole(path: str | os.PathLike[str], data: bytes) -> None:
    """`path`'s new content, written whole (see `written_whole`)."""
    with written_whole(path) as partial:
        partial.write_bytes(data)


def is_remote(path: str | os.PathLike[str]) -> bool:
    """A URI rather than a local path: read and written through `filesystem`, never with open()."""
    return "://" in str(path)


def filesystem(where: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem holding `where` and the path inside it (a local path is its own path); pyarrow
    is imported only when asked: what Ray can write there, this can."""
    import pyarrow.fs

    if is_remote(where):
        return pyarrow.fs.FileSystem.from_uri(where)
    return pyarrow.fs.LocalFileSystem(), where
