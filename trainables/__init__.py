"""Lab models wrapped as Ray Tune trainables.

Importing this package registers every shipped lab (`trainables.hparams`, torch-free) and
imports nothing of `tune_lab` or `reports`.
"""
from trainables import hparams  # noqa: F401  (registers the labs; see trainables.registry)
