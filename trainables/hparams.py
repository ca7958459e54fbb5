"""Moved to `labspec.hparams` (the labs' declarations live beneath the training code); kept so that a lab
written against `trainables.hparams` still imports."""
from labspec.hparams import *  # noqa: F401,F403
