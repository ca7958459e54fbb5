"""The lab registry: a decorator on each lab's hyperparameter dataclass registers the lab.

The CLI's lab choices, `tune-lab list` and search-file validation all come from here, so the
registry must stay importable without torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class LabSpec:
    name: str
    config: type
    module: str  # the module holding the lab's models and `Trainer` (imports torch)
    datasets: tuple[str, ...]
    default_dataset: str
    description: str
    metrics: tuple[str, ...]  # reported every epoch, besides epoch_time_s and samples_per_s
    # Dataset used when the default one cannot be had and the user did not ask for a dataset.
    fallback_dataset: str | None = None
    # Share of one GPU a trial takes by default; small labs leave room for others.
    gpu_fraction: float = 1.0
    # Whether `tune-lab generate` can draw images from the lab's best checkpoint: None (it
    # cannot), "unconditional" (from noise) or "conditional" (of a requested class, --digit).
    # The lab's module then has `sample_images(checkpoint_dir, n, *, digit, seed)`.
    sampler: str | None = None

    def trainer(self) -> Callable[..., Any]:
        return importlib.import_module(self.module).Trainer

    def data_loader(self) -> Callable[..., Any]:
        """`load_data(dataset, data_dir, subset=...)` of the lab's module, run once on the driver."""
        return importlib.import_module(self.module).load_data


LABS: dict[str, LabSpec] = {}
SAMPLERS = (None, "unconditional", "conditional")


def register_lab(
    name: str,
    *,
    module: str,
    datasets: tuple[str, ...],
    description: str,
    metrics: tuple[str, ...],
    fallback_dataset: str | None = None,
    gpu_fraction: float = 1.0,
    sampler: str | None = None,
) -> Callable[[T], T]:
    if sampler not in SAMPLERS:
        raise ValueError(f"lab {name!r}: sampler {sampler!r} is not one of {SAMPLERS}")

    def decorate(config_cls: T) -> T:
        if name in LABS:
            raise ValueError(f"lab {name!r} is registered twice")
        LABS[name] = LabSpec(
            name=name,
            config=config_cls,
            module=module,
            datasets=datasets,
            default_dataset=datasets[0],
            description=description,
            metrics=metrics,
            fallback_dataset=fallback_dataset,
            gpu_fraction=gpu_fraction,
            sampler=sampler,
        )
        return config_cls

    return decorate


def get_lab(name: str) -> LabSpec:
    import trainables.hparams  # noqa: F401  (registers every lab)

    try:
        return LABS[name]
    except KeyError:
        raise KeyError(f"unknown lab {name!r}; known labs: {', '.join(sorted(LABS))}") from None


def lab_names() -> list[str]:
    import trainables.hparams  # noqa: F401

    return sorted(LABS)
