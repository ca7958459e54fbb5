"""tune-lab: hyperparameter searches over classic PyTorch course labs."""

__version__ = "0.1.0"
