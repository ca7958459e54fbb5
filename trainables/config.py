"""Typed hyperparameters: declaring them, and checking a user's value against the declaration.

A lab's hyperparameters are a dataclass; the type hint says what a value may be (`int`,
`float`, `bool`, `str` or a `Literal` of allowed words) and `hp(min=..., max=...)` adds
bounds. Search files and `--set` are checked against these before any trial starts, so a
typo costs a second, not a Ray start-up.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Literal

_MISSING = object()


def hp(default: Any, *, min: float | None = None, max: float | None = None, help: str = "") -> Any:
    """A hyperparameter with optional inclusive bounds."""
    return dataclasses.field(default=default, metadata={"min": min, "max": max, "help": help})


def field_types(config_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(config_cls)


def describe_allowed(config_cls: type, key: str) -> str:
    """A short phrase saying what `key` accepts, for error messages and `tune-lab list`."""
    kind = field_types(config_cls)[key]
    meta = {f.name: f.metadata for f in dataclasses.fields(config_cls)}[key]
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
    types = field_types(config_cls)
    if key not in types:
        raise KeyError(key)
    kind = types[key]
    meta = {f.name: f.metadata for f in dataclasses.fields(config_cls)}[key]

    def bad() -> ValueError:
        return ValueError(f"{key}: {value!r} is not allowed; expected {describe_allowed(config_cls, key)}")

    if typing.get_origin(kind) is Literal:
        if value not in typing.get_args(kind) or isinstance(value, bool):
            raise bad()
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad()
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise bad()
        return value
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise bad()
    return value


def effective_config(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config with its sweep case (`config["case"]`, if any) applied on top."""
    flat = {k: v for k, v in config.items() if k != "case"}
    return {**flat, **config.get("case", {})}


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


def per_seed_key(metric: str, seed: int) -> str:
    """The name one seed's value of `metric` is reported, logged and read back under."""
    return f"{metric}/seed_{seed}"
