"""Moved to `labspec.registry` (the labs' declarations live beneath the training code); kept so that a lab
written against `trainables.registry` still imports."""
from labspec.registry import *  # noqa: F401,F403
