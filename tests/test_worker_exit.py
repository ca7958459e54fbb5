"""A search's trial processes end without a traceback when Ray stops them (issue 20, item 12).

What a trial process does at the end of a search, made deterministic: Ray's SIGTERM handler
(`SystemExit(1)`, as ray._private.worker installs it) runs while the main thread is inside a
weakref callback, so the exit cannot propagate and Python reports it as "Exception ignored".
"""
from __future__ import annotations

import subprocess
import sys


PROCESS = """
import os, signal, sys, weakref

if sys.argv[1] == "quiet":
    from trainables.worker_exit import exit_quietly_on_unraisable_exit
    exit_quietly_on_unraisable_exit()

def rays_sigterm_handler(signum, frame):  # ray._private.worker: raise_sys_exit_with_custom_error_message(..., exit_code=1)
    raise SystemExit(1)

signal.signal(signal.SIGTERM, rays_sigterm_handler)

class Item:
    pass

def cleanup(_):  # a WeakSet's _remove, say: the signal arrives while it runs
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):
        pass

item = Item()
ref = weakref.ref(item, cleanup)
del item
print("went on after SIGTERM", flush=True)
"""


def run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROCESS, mode], capture_output=True, text=True, timeout=60)


def test_without_the_hook_the_traceback_shows_and_the_process_goes_on():
    done = run("ray")  # the problem as it was: the test reproduces it
    assert "Exception ignored in" in done.stderr and "SystemExit: 1" in done.stderr
    assert "went on after SIGTERM" in done.stdout


def test_with_the_hook_the_process_exits_quietly_with_rays_code():
    done = run("quiet")
    assert done.returncode == 1
    assert done.stderr == "" and done.stdout == ""


def test_other_unraisable_exceptions_still_reach_the_previous_hook():
    from trainables.worker_exit import exit_quietly_on_unraisable_exit

    saved, seen = sys.unraisablehook, []
    try:
        sys.unraisablehook = seen.append
        exit_quietly_on_unraisable_exit()
        ours = sys.unraisablehook
        exit_quietly_on_unraisable_exit()  # once per process: not a hook around a hook
        assert sys.unraisablehook is ours and ours is not seen.append

        class Broken:
            def __del__(self):
                raise ValueError("a real bug")

        Broken()
        assert [type(u.exc_value) for u in seen] == [ValueError]
    finally:
        sys.unraisablehook = saved
