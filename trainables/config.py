"""Moved to `labspec.config` (the labs' declarations live beneath the training code); kept so that a lab
written against `trainables.config` still imports."""
from labspec.config import *  # noqa: F401,F403
