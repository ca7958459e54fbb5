"""Errors a user can cause and fix, importable without numpy or torch (the CLI catches them)."""


class DatasetUnavailable(RuntimeError):
    """The dataset's files are missing or unreadable and could not be downloaded."""
