"""The lab contract and the registry that holds every lab.

A lab is two pieces, apart on purpose. Its hyperparameter dataclass is registered with
`@register_lab` in trainables/hparams.py, which imports no torch, so that `tune-lab --help`,
`tune-lab list` and the check of a search file answer before torch is. Its module (`module=`)
holds the models and the train/eval step, and provides what `LabModule` lists; its data object
is a `LabData`. Registration flows one way: hparams imports this module, and the package's
__init__ imports hparams, so importing anything of `trainables` registers every shipped lab.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol, TypeVar, runtime_checkable

T = TypeVar("T", bound=type)
# What a lab's train_loss / val_loss measure, for the axis of the report's loss figure: one phrase, or
# a function of a trial's config where a setting changes the loss (the VAE's faithful loss is no ELBO).
LossUnit = str | Callable[[Mapping[str, Any]], str]
Mode = Literal["min", "max"]
SAMPLERS = (None, "unconditional", "conditional")


@runtime_checkable
class LabData(Protocol):
    """The data a lab's `load_data` returns: loaded once on the driver, shared with every trial."""

    name: str  # the dataset actually used (after any fallback)

    @property
    def split_sizes(self) -> dict[str, int]: ...

    def trial_split(self, config: dict[str, Any]) -> str:
        """The samples a trial of `config` uses per split, for the driver's opening line."""

    def checkpoint_info(self) -> dict[str, Any]:
        """What a checkpoint must remember about the data to be used on its own (plain values)."""


@runtime_checkable
class LabModule(Protocol):
    """What a lab's module provides. The three hooks are None where the lab has nothing to add."""

    Trainer: type  # a trainables.loop.Trainer: one seed of one configuration, epoch by epoch

    def load_data(self, dataset: str, data_dir: str | None = None, *, subset: int | None = None) -> LabData: ...

    # The lab's own figures (caption, PNG path) and Markdown for the report, on the best checkpoint.
    report_figures: Callable[[str, Any, Path], list[tuple[str, str]]] | None
    report_text: Callable[[str, Any], str] | None
    # `sample_images(checkpoint_dir, n, *, digit, seed)` for `tune-lab generate` (see LabSpec.sampler).
    sample_images: Callable[..., Any] | None


@dataclass(frozen=True)
class LabSpec:
    name: str
    config: type
    module: str  # the module holding the lab's models and `Trainer` (imports torch)
    datasets: tuple[str, ...]
    description: str
    # Every metric the lab reports each epoch (besides epoch_time_s and samples_per_s), with the
    # direction that is better; `metric` is what a search optimises unless its file says otherwise.
    metrics: Mapping[str, Mode]
    metric: str
    # Dataset used when the default one cannot be had and the user did not ask for a dataset.
    fallback_dataset: str | None = None
    # Share of one GPU a trial takes by default; small labs leave room for others.
    gpu_fraction: float = 1.0
    # What `tune-lab generate` draws from the best checkpoint: None (nothing), "unconditional"
    # (from noise) or "conditional" (of a requested class, --digit) through `sample_images`.
    sampler: str | None = None
    loss_unit: LossUnit = "loss"

    @property
    def default_dataset(self) -> str:
        return self.datasets[0]

    def loss_unit_of(self, config: Mapping[str, Any]) -> str:
        """What one trial's train_loss / val_loss measure (see LossUnit)."""
        return self.loss_unit(config) if callable(self.loss_unit) else self.loss_unit

    def load(self) -> LabModule:
        """The lab's module (imports torch), checked against the contract."""
        module = importlib.import_module(self.module)
        if not isinstance(module, LabModule):
            missing = [name for name in LAB_MODULE_MEMBERS if not hasattr(module, name)]
            raise TypeError(f"lab {self.name!r}: module {self.module} lacks {', '.join(missing)} (see trainables.registry.LabModule)")
        return module


LAB_MODULE_MEMBERS = ("Trainer", "load_data", "report_figures", "report_text", "sample_images")
LABS: dict[str, LabSpec] = {}


def register_lab(
    name: str,
    *,
    module: str,
    datasets: tuple[str, ...],
    description: str,
    metrics: Mapping[str, Mode],
    metric: str,
    fallback_dataset: str | None = None,
    gpu_fraction: float = 1.0,
    sampler: str | None = None,
    loss_unit: LossUnit = "loss",
) -> Callable[[T], T]:
    """Register the decorated hyperparameter dataclass as lab `name`."""
    if sampler not in SAMPLERS:
        raise ValueError(f"lab {name!r}: sampler {sampler!r} is not one of {SAMPLERS}")
    if metric not in metrics or any(mode not in ("min", "max") for mode in metrics.values()):
        raise ValueError(f"lab {name!r}: metric {metric!r} must be one of its metrics, each min or max")

    def decorate(config_cls: T) -> T:
        if name in LABS:
            raise ValueError(f"lab {name!r} is registered twice")
        LABS[name] = LabSpec(name=name, config=config_cls, module=module, datasets=datasets, description=description,
                             metrics=dict(metrics), metric=metric, fallback_dataset=fallback_dataset,
                             gpu_fraction=gpu_fraction, sampler=sampler, loss_unit=loss_unit)
        return config_cls

    return decorate


def get_lab(name: str) -> LabSpec:
    try:
        return LABS[name]
    except KeyError:
        raise KeyError(f"unknown lab {name!r}; known labs: {', '.join(sorted(LABS))}") from None


def lab_names() -> list[str]:
    return sorted(LABS)
