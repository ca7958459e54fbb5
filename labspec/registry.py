"""The lab contract and the registry that holds every lab.

A lab is two pieces, apart on purpose. Its hyperparameter dataclass is registered with
`@register_lab` in labspec/hparams.py, which imports no torch, so that `tune-lab --help`,
`tune-lab list` and the check of a search file answer before torch is. Its module (`module=`)
holds the models and the train/eval step, and provides what `LabModule` lists; its data object
is a `LabData`. Registration flows one way: hparams imports this module, and labspec's __init__
imports hparams, so importing anything of `labspec` (or of `trainables`, which imports labspec)
registers every shipped lab.
A lab of one's own registers the same way from its own file (`module=__name__`), which
`tune-lab --labs FILE.py` imports (tune_lab.user_labs); `module=` may also be the module object
itself, for a lab defined in a notebook.
"""
from __future__ import annotations

import importlib
import types
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol, TypeVar, runtime_checkable

from labspec.errors import TuneLabError

T = TypeVar("T", bound=type)
# What a lab's train_loss / val_loss measure, for the axis of the report's loss figure: one phrase, or
# a function of a trial's config where a setting changes the loss (the VAE's faithful loss is no ELBO).
LossUnit = str | Callable[[Mapping[str, Any]], str]
Mode = Literal["min", "max"]
SAMPLERS = (None, "unconditional", "conditional")


@dataclass(frozen=True)
class Cost:
    """What one epoch of a trial costs on one torch thread: what `tune-lab reproduce --dry-run` plans with.

    Declared by the lab (measured once on the machine tune-lab is developed on), so that a lab's
    estimate is its own measurement or, for a lab that declares none, said to be unknown, never a
    guess the planner makes up."""

    sample_s: float  # seconds per training sample per epoch, one torch thread
    eval_s: float  # seconds of each epoch's evaluation (val and test splits, generated samples)
    quality_scaled: bool = False  # eval_s is for quality_samples=2000 and scales with it


# A lab's cost: one Cost, or a function of a trial's config where a setting changes it (a model's size).
CostOf = Cost | Callable[[Mapping[str, Any]], Cost] | None

# What a metric's name says, in every lab (reports read their columns, figures and units from it):
# - `train_` / `val_` / `test_` name the split it is measured on; a report's table shows the train_ and
#   val_ metrics beside the searched one, and test_ X is the held-out twin of val_ X;
# - `train_loss` and `val_loss` draw the report's loss figure, in the lab's `loss_unit`;
# - a name ending in `_acc`, and each name a lab lists in `fractions=`, is a fraction in [0, 1], which
#   reports show as a percentage (the data keeps the fraction);
# - `samples`, from `train_epoch`, is how many training samples the epoch saw (samples_per_s).
FRACTION_SUFFIX = "_acc"


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


class LabContractError(TuneLabError, TypeError):
    """A lab's module (or its registration) lacks what the contract asks: one line naming what."""


class UnknownLab(TuneLabError, KeyError):
    """No lab of that name is registered (a lab of one's own is imported with --labs)."""

    def __str__(self) -> str:  # KeyError's own would quote the whole message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class LabSpec:
    name: str
    config: type
    # The module holding the lab's models and `Trainer` (imports torch): its dotted name, or the module
    # object itself / any namespace with LabModule's members (a lab defined in a notebook, whose
    # `__main__` trial processes cannot import: pickled, the spec carries those members by value).
    module: str | Any
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
    cost: CostOf = None
    fractions: tuple[str, ...] = ()  # metrics besides `*_acc` that are fractions in [0, 1] (see above)
    # Where the lab came from, when it is not one of tune-lab's: the absolute path of the file given
    # to --labs, the module's name, or "entry point NAME (MODULE)" (tune_lab.user_labs); recorded in
    # summary.json as `lab_source`, so that `tune-lab report` / `resume` find the lab again.
    source: str | None = None

    @property
    def default_dataset(self) -> str:
        return self.datasets[0]

    def loss_unit_of(self, config: Mapping[str, Any]) -> str:
        """What one trial's train_loss / val_loss measure (see LossUnit)."""
        return self.loss_unit(config) if callable(self.loss_unit) else self.loss_unit

    def cost_of(self, config: Mapping[str, Any]) -> Cost | None:
        """What an epoch of a trial of `config` costs (see Cost); None where the lab declares nothing."""
        return self.cost(config) if callable(self.cost) else self.cost

    @property
    def module_name(self) -> str:
        """The module's dotted name (a module object's or namespace's own, else what it is)."""
        if isinstance(self.module, str):
            return self.module
        return getattr(self.module, "__name__", None) or type(self.module).__name__

    def load(self) -> LabModule:
        """The lab's module (imports torch), checked against the contract (LabContractError names what lacks)."""
        module = importlib.import_module(self.module) if isinstance(self.module, str) else self.module
        check_module(self.name, self.module_name, module)
        return module

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (Ray sends the spec to every trial), a module object travels as a namespace of the
        lab's members: cloudpickle would send a module by name, and `__main__` is another module there."""
        state = dict(self.__dict__)
        if isinstance(self.module, types.ModuleType):
            state["module"] = types.SimpleNamespace(__name__=self.module.__name__,
                                                    **{m: getattr(self.module, m) for m in LAB_MODULE_MEMBERS
                                                       if hasattr(self.module, m)})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)  # frozen: no setattr


def check_module(lab: str, where: str, module: Any) -> None:
    """Raise LabContractError (one line) unless `module` provides what LabModule lists, usably."""
    missing = [name for name in LAB_MODULE_MEMBERS if not hasattr(module, name)]
    if missing:
        raise LabContractError(f"lab {lab!r}: module {where} lacks {', '.join(missing)} "
                               f"(a lab's module provides {', '.join(LAB_MODULE_MEMBERS)}; see labspec.registry.LabModule)")
    trainer = module.Trainer
    if not isinstance(trainer, type):
        raise LabContractError(f"lab {lab!r}: {where}.Trainer = {repr(trainer)[:60]} is not a class "
                               f"(subclass trainables.loop.Trainer)")
    lacking = [m for m in ("train_epoch", "evaluate") if not callable(getattr(trainer, m, None))]
    if lacking:
        raise LabContractError(f"lab {lab!r}: {where}.Trainer lacks {', '.join(lacking)} (subclass trainables.loop.Trainer)")
    if not callable(module.load_data):
        raise LabContractError(f"lab {lab!r}: {where}.load_data is not callable (a function "
                               f"load_data(dataset, data_dir=None, *, subset=None) returning the lab's data)")
    for hook in ("report_figures", "report_text", "sample_images"):
        if getattr(module, hook) is not None and not callable(getattr(module, hook)):
            raise LabContractError(f"lab {lab!r}: {where}.{hook} is neither None nor a function")


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
    cost: CostOf = None,
    fractions: tuple[str, ...] = (),
    source: str | None = None,
) -> Callable[[T], T]:
    """Register the decorated hyperparameter dataclass as lab `name`.

    `module`: the dotted name of the lab's module, or the module object itself (or any namespace with
    LabModule's members), e.g. `sys.modules[__name__]` in a notebook. `source`: see LabSpec.source
    (tune_lab.user_labs sets it for the labs --labs imports)."""
    if sampler not in SAMPLERS:
        raise LabContractError(f"lab {name!r}: sampler {sampler!r} is not one of {SAMPLERS}")
    if metric not in metrics or any(mode not in ("min", "max") for mode in metrics.values()):
        raise LabContractError(f"lab {name!r}: metric {metric!r} must be one of its metrics, each min or max")
    if not set(fractions) <= set(metrics):
        raise LabContractError(f"lab {name!r}: fractions {sorted(set(fractions) - set(metrics))} are not among its "
                               f"metrics ({', '.join(metrics)})")

    def decorate(config_cls: T) -> T:
        if name in LABS:
            raise LabContractError(f"lab {name!r} is registered twice (a lab of tune-lab's, or another file's, "
                                   f"has that name: choose another)")
        if not is_dataclass(config_cls):
            raise LabContractError(f"lab {name!r}: {config_cls.__name__} is not a dataclass (decorate it with "
                                   f"@dataclass under @register_lab)")
        lacking = [f for f in ("epochs", "seed") if f not in {field.name for field in fields(config_cls)}]
        if lacking:
            raise LabContractError(f"lab {name!r}: {config_cls.__name__} lacks {', '.join(lacking)} "
                                   f"(declare `epochs: int` and `seed: int = 0`, or subclass labspec.hparams.TrainConfig)")
        LABS[name] = LabSpec(name=name, config=config_cls, module=module, datasets=datasets, description=description,
                             metrics=dict(metrics), metric=metric, fallback_dataset=fallback_dataset,
                             gpu_fraction=gpu_fraction, sampler=sampler, loss_unit=loss_unit, cost=cost,
                             fractions=tuple(fractions), source=source)
        return config_cls

    return decorate


def get_lab(name: str) -> LabSpec:
    try:
        return LABS[name]
    except KeyError:
        raise UnknownLab(f"unknown lab {name!r}; known labs: {', '.join(sorted(LABS))} (a lab of your own: "
                         f"--labs FILE.py, or TUNE_LAB_LABS)") from None


def lab_names() -> list[str]:
    return sorted(LABS)


def is_fraction(metric: str) -> bool:
    """Whether `metric` is a fraction in [0, 1]: a name ending in `_acc`, or one a registered lab lists
    in `fractions=`."""
    return metric.endswith(FRACTION_SUFFIX) or any(metric in spec.fractions for spec in LABS.values())
