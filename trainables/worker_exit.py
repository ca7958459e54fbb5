"""A trial process that Ray stops with SIGTERM exits without printing a traceback.

Ray's worker turns SIGTERM into `SystemExit(1)` raised from a Python signal handler. The handler
runs in the main thread wherever that thread is, and when the signal lands while it runs a weakref
callback (a `WeakSet` being cleaned up, at the end of every search) the exception cannot propagate:
Python prints "Exception ignored in ... WeakSet ... SystemExit: 1", Ray forwards it to the
driver's terminal, and the process even goes on until it is killed (issue 20: seen after
successful searches). An unraisable SystemExit is the exit that was asked for, so here it exits
the process, quietly, with its code; every other unraisable exception is reported as before.
"""
from __future__ import annotations

import os
import sys


def exit_quietly_on_unraisable_exit() -> None:
    """Install, once per process, a `sys.unraisablehook` that turns an unraisable SystemExit into
    an exit (any thread may call this: the hook is process-wide)."""
    if getattr(sys.unraisablehook, "tune_lab_quiet_exit", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, SystemExit):
            code = unraisable.exc_value.code
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 1)
        previous(unraisable)

    hook.tune_lab_quiet_exit = True
    sys.unraisablehook = hook
