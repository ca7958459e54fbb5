"""Lab models wrapped as Ray Tune trainables.

Nothing here imports `tune_lab` or `reports`; importing this package itself is torch-free
(see `trainables.hparams` for why that matters).
"""
