"""Files written whole: whoever reads one sees the old content or the new, never half of it.

Several writers need that: a driver killed mid-write (`kill -9`, a preempted head) must not leave a
results file or a scheduler's rung table cut short for `tune-lab resume`, and two searches filling
the same cache (decoded datasets, the reference classifier) must not read each other's half-written
copy. The new content goes to a file beside the target, named after the process and thread that
write it, and takes the target's place in one `os.replace` (atomic on one file system). Two writers
of one file therefore each rename a complete file of their own: the last one wins.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path


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
