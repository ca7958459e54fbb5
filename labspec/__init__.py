"""What a lab is, declared without torch: the lab contract and registry, every shipped lab's
hyperparameters, and the small helpers every layer shares (config values, errors, atomic files,
plot axes).

It sits beneath both the training code (`trainables`) and what reads its results (`reports`,
`tune_lab`), so that "reports never import training code" is kept by the layout: reports/ imports
labspec, never a lab module. Importing it registers every shipped lab (`labspec.hparams`).
"""
from labspec import hparams  # noqa: F401  (registers the labs; see labspec.registry)
