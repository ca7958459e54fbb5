"""tune-lab: hyperparameter searches over classic PyTorch course labs.

From Python (docs/python.md): `tune_lab.search`, `tune_lab.load`, `tune_lab.resume`, `tune_lab.labs`,
`tune_lab.searches`, the `Result` they return, `TuneLabError` (what bad input raises) and `tune_lab.lab`,
which registers a lab of your own (trainables/light.py). They are
imported on first use, so that `import tune_lab` (and the `tune-lab` command) stays quick.
"""

__version__ = "0.1.0"

_API = {"search": "tune_lab.api", "load": "tune_lab.api", "resume": "tune_lab.api", "labs": "tune_lab.api",
        "searches": "tune_lab.api", "Result": "tune_lab.result", "Best": "tune_lab.result",
        "TuneLabError": "labspec.errors", "lab": "trainables.light"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'tune_lab' has no attribute {name!r}")
