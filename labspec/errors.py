"""Errors a user can cause and fix, importable without numpy or torch (the CLI catches them)."""


class TuneLabError(ValueError):
    """Bad input: one line that names the file, key or value and what is allowed.

    The command line prints it and exits 2, nothing written; the Python API (`tune_lab.search`,
    `tune_lab.load`, ...) raises it as it is. Every such error of tune-lab's is one of these.
    """


class DatasetUnavailable(TuneLabError, RuntimeError):
    """The dataset's files are missing or unreadable and could not be downloaded."""
