"""Lab models wrapped as Ray Tune trainables: one module per lab, the shared epoch loop, data.

The labs' declarations (their registry and hyperparameters) live beneath this package, in
`labspec`; importing this package registers every shipped lab through it, and imports nothing of
`tune_lab` or `reports`.
"""
import labspec  # noqa: F401  (registers the labs)
