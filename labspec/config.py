"""Typed hyperparameters: declaring them, and checking a user's value against the declaration.

A lab's hyperparameters are a dataclass; the type hint says what a value may be (`int`,
`float`, `bool`, `str` or a `Literal` of allowed words) and `hp(min=..., max=...)` adds
bounds. Search files and `--set` are checked against these before any trial starts, so a
typo costs a second, not a Ray start-up.
"""
from __future__ import annotations

import dataclasses
import functools
import operator
import typing
from typing import Annotated, Any, Literal


def hp(default: Any, *, min: float | None = None, max: float | None = None, help: str = "") -> Any:
    """A hyperparameter with optional inclusive bounds."""
    return dataclasses.field(default=default, metadata={"min": min, "max": max, "help": help})


@functools.cache
def field_types(config_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(config_cls)


def describe_allowed(config_cls: type, key: str) -> str:
    """A short phrase saying what `key` accepts, for error messages and `tune-lab list`."""
    kind = field_types(config_cls)[key]
    meta = config_cls.__dataclass_fields__[key].metadata
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(kind))
    text = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[kind]
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        text += f" in [{lo}, {hi}]"
    elif lo is not None:
        text += f" >= {lo}"
    elif hi is not None:
        text += f" <= {hi}"
    return text


def coerce(config_cls: type, key: str, value: Any) -> Any:
    """Return `value` as the type `key` wants, or raise ValueError saying what is allowed.

    Integers are accepted where floats are wanted (1 -> 1.0); nothing else is converted, so
    `epochs: "20"` or `lr: true` is an error rather than a silent guess.
    """
    from pydantic import ValidationError

    if key not in field_types(config_cls):
        raise KeyError(key)
    try:
        return getattr(hp_model(config_cls).model_validate({key: value}), key)
    except ValidationError:
        raise ValueError(f"{key}: {value!r} is not allowed; expected {describe_allowed(config_cls, key)}") from None


@functools.cache
def hp_model(config_cls: type, shape: str = "value") -> Any:
    """The hyperparameters as a pydantic model, each optional, typed by its hint and `hp` bounds, strict
    (nothing converted but int -> float), finite, no unknown key; a field's description says what it
    allows. `shape`: a value per parameter, a "list" of them (a sweep), or "dist" ({distribution: [values]})."""
    from pydantic import ConfigDict, Field, create_model

    def field(f: dataclasses.Field) -> tuple[Any, Any]:
        kind = field_types(config_cls)[f.name]
        if kind in (int, float):
            kind = Annotated[kind, Field(ge=f.metadata.get("min"), le=f.metadata.get("max"))]
        kind = {"value": kind, "list": list[kind], "dist": dict[str, list[kind]]}[shape]
        return kind, Field(None, description=describe_allowed(config_cls, f.name))

    strict = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, title="parameter")
    return create_model(config_cls.__name__, __config__=strict, **{f.name: field(f) for f in dataclasses.fields(config_cls)})


def effective_config(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config with its sweep case (`config["case"]`, if any) applied on top."""
    flat = {k: v for k, v in config.items() if k != "case"}
    return {**flat, **config.get("case", {})}


def trained_with(config: dict[str, Any], repeats: int = 1) -> dict[str, Any]:
    """What a trial trains with, as its MLflow run and its summary.json row record it: its config with its sweep
    case applied, and its seeds per configuration when more than one (run_trial's `repeats`, carried beside the
    config rather than in it: not a hyperparameter)."""
    return {**effective_config(config), **({"repeats": repeats} if repeats > 1 else {})}


def config_from_dict(config_cls: type, values: dict[str, Any]) -> Any:
    """Build the dataclass from a trial's config, ignoring keys that belong to other layers."""
    values = effective_config(values)
    names = {f.name for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: coerce(config_cls, k, v) for k, v in values.items() if k in names})


def defaults(config_cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config_cls)}


# --- a configuration's seeds (--repeats; trained by trainables.seeds) -------------------------

MAX_REPEATS = 32  # seeds per configuration: beyond this a t-interval hardly narrows, the cost grows linearly


def seed_list(seed: int, repeats: int) -> list[int]:
    """The seeds of a configuration: `seed`, `seed + 1`, ... (the first is today's single seed,
    so seed s of a repeated search trains exactly as a one-seed search with --seed s)."""
    return [seed + k for k in range(repeats)]


# Which of two results is better, by the metric's mode: strictly, so that of equal results the first stays best.
# The one rule for a trial's best epoch, the checkpoint it keeps, and the search's best trial (reports.record.best_of).
BETTER = {"max": operator.gt, "min": operator.lt}


def per_seed_key(metric: str, seed: int) -> str:
    """The name one seed's value of `metric` is reported, logged and read back under."""
    return f"{metric}/seed_{seed}"
