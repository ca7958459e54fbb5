"""Search files: read and checked against the lab's hyperparameters (tune_lab.plan turns a checked search into
Ray Tune's objects).

Everything here runs before Ray or torch is imported, so a bad file costs well under a
second and the message names the file, the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal, Optional

import yaml

from labspec.config import MAX_REPEATS, coerce, describe_allowed, field_types, hp_model
from labspec.errors import TuneLabError
from labspec.registry import LabSpec, get_lab

import search_spaces

SEARCH_DIR = Path(search_spaces.__file__).parent
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint", "quniform")
SEARCH_ALGORITHMS = ("grid", "random", "optuna")
SCHEDULERS = ("asha", "promotion", "fifo")  # asha / promotion: tune_lab.schedulers' StoppingASHA / PromotionASHA
TOP_LEVEL_KEYS = (
    "description", "lab", "metric", "mode", "fixed", "params", "search", "num_samples", "scheduler", "dataset",
    "sweeps", "variants", "repeats",
)
CASE_KEY = "case"  # the trial config key holding a sweep case's values (see `cases`)
MAX_NUM_SAMPLES = 10_000
ASHA_DEFAULTS = {"grace_period": 1, "reduction_factor": 3}
FINALISTS = 2  # promotion: trials trained to the end at least (tune_lab.schedulers.PromotionASHA)
class SearchSpaceError(TuneLabError):
    """A search file or override that cannot be run; the message says where and why.

    Always one line: a key or value from the file that holds a newline or other control
    character is shown escaped ('\\n'), never as a line break.
    """

    def __init__(self, message: str) -> None:
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


@dataclass
class Param:
    name: str
    distribution: str
    args: list[Any]


@dataclass
class Search:
    path: Path
    name: str
    lab: str
    description: str
    metric: str
    mode: str
    fixed: dict[str, Any]
    params: dict[str, Param]
    algorithm: str
    num_samples: int
    scheduler: str
    scheduler_args: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    # One-at-a-time sweeps from the fixed values (a lab's table: one row per changed setting),
    # each run once per variant (e.g. the lab's model as written, and corrected).
    sweeps: dict[str, list[Any]] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Seeds per configuration, trained inside one trial (see trainables.seeds).
    repeats: int = 1
    # The --set values that changed what the file says (a value of its own, or one it searches): reports.facts.
    overrides: dict[str, Any] = field(default_factory=dict)

    def cases(self) -> list[dict[str, Any]]:
        """The distinct trials of the sweeps: the base setting is shared by every sweep, run once."""
        out: list[dict[str, Any]] = []
        seen: list[dict[str, Any]] = []
        for variant, values in (self.variants or {"": {}}).items():
            for param, settings in self.sweeps.items():
                for value in settings:
                    # every swept parameter in every case: one column each in tables and MLflow
                    case = {**{q: self.fixed[q] for q in self.sweeps}, **values, param: value}
                    if variant:
                        case["variant"] = variant
                    effective = {**self.fixed, **case}
                    if effective not in seen:
                        seen.append(effective)
                        out.append(case)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": str(self.path)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Search":
        """The search as it was run: a resumed search must not pick up edits to its file."""
        params = {name: Param(**p) for name, p in data["params"].items()}
        return cls(**{**data, "path": Path(data["path"]), "params": params})

    def trial_configs(self) -> list[dict[str, Any]]:
        """Every whole configuration the grid, choices and sweeps give (a continuous draw stays at its
        fixed or default value): what the driver can say about the trials before they start."""
        import itertools

        from labspec.config import defaults

        base = {**defaults(self.spec.config), **self.fixed}
        listed = {name: p.args for name, p in self.params.items() if p.distribution in ("grid", "choice")}
        combos = [dict(zip(listed, values)) for values in itertools.product(*listed.values())]
        return [{**base, **combo, **case} for combo in combos for case in self.cases() or [{}]]

    def trial_count(self, num_samples: int | None = None) -> int:
        """How many trials the search starts: its grid (every combination, each sweep case) times num_samples;
        Optuna's and random draws are num_samples trials."""
        grid = math.prod(len(p.args) for p in self.params.values() if p.distribution == "grid")
        return grid * max(1, len(self.cases())) * (num_samples or self.num_samples)

    def varied_by_cases(self) -> list[str]:
        return (["variant"] if self.variants else []) + list(self.sweeps)

    @property
    def spec(self) -> LabSpec:
        return get_lab(self.lab)

    def rung_args(self) -> tuple[int, float, int]:
        """grace_period (at most the last epoch), reduction_factor and max_t, as both ASHA variants take them."""
        args = {**ASHA_DEFAULTS, **(self.scheduler_args or {})}
        max_t = self.max_epochs()
        return min(args["grace_period"], max_t), args["reduction_factor"], max_t

    def rungs(self, scheduler: str | None = None) -> list[int]:
        """The epochs at which the search's scheduler (`scheduler`, else the file's) judges its trials; none for FIFO."""
        return rung_epochs(*self.rung_args()) if (scheduler or self.scheduler) in ("asha", "promotion") else []

    def max_epochs(self) -> int:
        """Upper bound on a trial's epochs: ASHA's max_t."""
        if "epochs" in self.sweeps:
            return int(max(self.sweeps["epochs"]))
        if "epochs" in self.params:
            p = self.params["epochs"]
            return int(max(p.args) if p.distribution in ("grid", "choice") else p.args[1])
        return int(self.fixed.get("epochs", self.spec.config.__dataclass_fields__["epochs"].default))


def rung_epochs(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """The epochs at which trials pause: grace_period x rf^k, below max_t (a trial at max_t is done)."""
    rungs, k = [], 0
    while True:
        epoch = int(round(grace_period * reduction_factor**k))
        if epoch >= max_t:
            return rungs
        if epoch not in rungs:
            rungs.append(epoch)
        k += 1



def search_path(lab: str, name_or_path: str) -> Path:
    """A search's name (a file in search_spaces/LAB/) or the path of the user's own file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate.resolve()
    return SEARCH_DIR / lab / f"{name_or_path}.yaml"


def available_searches(lab: str) -> dict[str, str]:
    """Search name -> its one-line description, for `tune-lab list` and error messages."""
    out = {}
    for path in sorted((SEARCH_DIR / lab).glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[path.stem] = str(doc.get("description", "")).strip()
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise SearchSpaceError(f"{path}: is a directory, not a search file")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SearchSpaceError(f"{path}: no such search file") from None
    except UnicodeDecodeError as exc:
        raise SearchSpaceError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SearchSpaceError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SearchSpaceError(f"{path}: {where}YAML syntax error: {problem}") from None
    if not isinstance(doc, dict):
        raise SearchSpaceError(f"{path}: expected a mapping of keys ({', '.join(TOP_LEVEL_KEYS)}), got {type(doc).__name__}")
    return doc


REPEATS_ALLOWED = f"expected an integer from 1 to {MAX_REPEATS} (seeds per configuration)"


def valid_repeats(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 1 <= value <= MAX_REPEATS


@functools.cache
def _models() -> SimpleNamespace:
    """A search file's shape as pydantic models, built on first use (`--help` never imports pydantic); strict:
    nothing is converted. A field's description, else its model's docstring, is what a refusal says is allowed."""
    from pydantic import BaseModel, ConfigDict, Field

    strict = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    values = Annotated[list, Field(min_length=1)]
    one = Annotated[dict[Literal[DISTRIBUTIONS], values], Field(min_length=1, max_length=1)]

    class File(BaseModel):
        model_config = strict
        description: Any = ""
        lab: Any = None  # checked against the registry (_file_lab), as are metric and dataset
        metric: Any = None
        mode: Optional[Literal["min", "max"]] = Field(None, description="min or max")
        fixed: Optional[dict] = Field(None, description="a mapping of parameter: value")
        params: Optional[dict[Any, one]] = Field(None, title="distribution", description=(
            "one {distribution: [arguments]} per parameter, e.g. lr: {grid: [0.1, 0.01]}; distributions: "
            + ", ".join(DISTRIBUTIONS)))
        search: Literal[SEARCH_ALGORITHMS] = Field("grid", description="one of " + ", ".join(SEARCH_ALGORITHMS))
        num_samples: int = Field(1, ge=1, le=MAX_NUM_SAMPLES, description=f"an integer from 1 to {MAX_NUM_SAMPLES}")
        scheduler: Any = "fifo"  # a name, or {name: Rungs}: _check_scheduler
        dataset: Any = None
        sweeps: Optional[dict[Any, values]] = Field(None, description="parameter: [values], a non-empty list each, e.g. epochs: [10, 20]")
        variants: Optional[dict[Any, dict]] = Field(None, description="a mapping of name: {parameter: value}")
        repeats: int = Field(1, ge=1, le=MAX_REPEATS, description=REPEATS_ALLOWED.removeprefix("expected "))

    class Rungs(BaseModel):
        """a mapping of grace_period, reduction_factor (an integer >= 1, a number > 1)"""
        model_config = strict
        grace_period: int = Field(ASHA_DEFAULTS["grace_period"], ge=1, description="an integer >= 1")
        reduction_factor: float = Field(ASHA_DEFAULTS["reduction_factor"], gt=1, description="a number > 1")

    class PromotionRungs(Rungs):
        """a mapping of grace_period, reduction_factor, finalists (an integer >= 1, a number > 1, an integer >= 1)"""
        finalists: int = Field(FINALISTS, ge=1, description="an integer >= 1")

    return SimpleNamespace(File=File, Rungs=Rungs, PromotionRungs=PromotionRungs)


def validated(path: Path, where: str, model: Any, value: Any) -> Any:
    """`value` checked by `model`, or a one-line refusal naming the file, the key path and what is allowed."""
    from pydantic import ValidationError

    def unknown(e: dict) -> bool:  # an unknown field, or a dict key outside its Literal: (..., key, "[key]")
        return e["type"] in ("extra_forbidden", "invalid_key") or e["loc"][-1:] == ("[key]",)

    def dotted(keys: tuple) -> str:
        return (where + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys)).lstrip(".")

    try:
        return model.model_validate(value)
    except ValidationError as exc:
        error = min(exc.errors(), key=lambda e: not unknown(e))  # the first unknown key, else the first error
    loc = tuple(k for k in error["loc"] if k != "[key]")
    field = model.model_fields.get(loc[0]) if loc else None
    if unknown(error):  # a key of a dict (its field's title names it) or of a model (its title does)
        allowed = error["ctx"]["expected"].replace("'", "") if error.get("ctx") else ", ".join(model.model_fields)
        noun = (field.title if error.get("ctx") else None) or model.model_config.get("title") or "key"
        parent = dotted(loc[:-1])
        raise SearchSpaceError(f"{path}: {parent + ': ' if parent else ''}unknown {noun} {loc[-1]!r}; allowed: {allowed}")
    expected = field.description if field is not None and field.description else model.__doc__
    raise SearchSpaceError(f"{path}: {dotted(loc)}: {error['input']!r} is not allowed; expected {expected}")


def _file_lab(path: Path, named: str | None, lab: str) -> LabSpec:
    """The lab a file is for: its `lab:`, else the folder of a shipped file (search_spaces/LAB/)."""
    if named is None and path.resolve().parent.parent != SEARCH_DIR.resolve():
        raise SearchSpaceError(f"{path}: lab: missing; a search file outside search_spaces/ names its lab, e.g. lab: {lab}")
    try:
        spec = get_lab(path.parent.name if named is None else str(named))
    except KeyError as exc:
        raise SearchSpaceError(f"{path}: lab: {exc.args[0]}") from None
    if spec.name != lab:
        raise SearchSpaceError(f"{path}: lab: the file is for lab {spec.name!r}, but the command runs lab {lab!r}")
    return spec


def load_search(name_or_path: str, lab: str, overrides: dict[str, Any] | None = None) -> Search:
    """Read and check a search; `overrides` (from --set) replace fixed values or searched ones.

    The file's shape is checked by `_models`, its parameters and values by the lab's `hp_model`."""
    path = search_path(lab, name_or_path)
    if not path.exists() and path.parent.parent == SEARCH_DIR:
        known = ", ".join(available_searches(lab)) or "none"
        raise SearchSpaceError(f"unknown search {name_or_path!r} for lab {lab}; known searches: {known} (or give a .yaml path)")
    doc = validated(path, "", _models().File, read_yaml(path))
    spec = _file_lab(path, doc.lab, lab)
    config_cls = spec.config
    metric = spec.metric if doc.metric is None else doc.metric
    if not isinstance(metric, str) or metric not in spec.metrics:
        raise SearchSpaceError(f"{path}: metric: unknown metric {metric!r} for lab {lab}; allowed: {', '.join(spec.metrics)}")

    def parameters(where: str, given: dict, shape: str = "value") -> dict[str, Any]:  # checked, in the file's order
        checked = validated(path, where, hp_model(config_cls, shape), given)
        return {key: getattr(checked, key) for key in given}

    fixed = parameters("fixed", doc.fixed or {})
    in_file = dict(fixed)
    # a grid's or choice's values, a range's bounds (the step q of quniform is no value of the parameter)
    drawn = parameters("params", {key: {d: a if d in ("grid", "choice") else a[:2] for d, a in body.items()}
                                  for key, body in (doc.params or {}).items()}, "dist")
    params = {}
    for key, body in (doc.params or {}).items():
        if key in fixed:
            raise SearchSpaceError(f"{path}: params.{key}: is also in fixed; a parameter is either fixed or searched")
        params[key] = _check_param(path, config_cls, key, body, drawn[key])
    for key, value in (overrides or {}).items():
        try:
            fixed[key] = coerce(config_cls, key, value)
        except KeyError:
            raise SearchSpaceError(f"--set {key}: unknown parameter for lab {lab}; allowed: {', '.join(field_types(config_cls))}") from None
        except ValueError as exc:
            raise SearchSpaceError(f"--set {exc}") from None
        params.pop(key, None)
    for p in params.values():
        if doc.search == "grid" and p.distribution != "grid":
            raise SearchSpaceError(f"{path}: params.{p.name}: search: grid takes only grid distributions; use search: random or optuna for {p.distribution}")
        if doc.search == "optuna" and p.distribution == "grid":
            raise SearchSpaceError(f"{path}: params.{p.name}: Optuna does not take grid; use choice")

    sweeps = parameters("sweeps", doc.sweeps or {}, "list")
    for key in sweeps:
        if key in params:
            raise SearchSpaceError(f"{path}: sweeps.{key}: is also in params; a parameter is either swept or searched")
        if key not in fixed:
            raise SearchSpaceError(f"{path}: sweeps.{key}: needs a base value in fixed (the setting the other sweeps use)")
    if doc.variants and not sweeps:
        raise SearchSpaceError(f"{path}: variants: only used with sweeps")
    variants = {str(name): parameters(f"variants.{name}", values) for name, values in (doc.variants or {}).items()}
    for name, values in variants.items():
        for key in set(values) & set(sweeps):
            raise SearchSpaceError(f"{path}: variants.{name}.{key}: is swept; a variant may not change it")

    algorithm, num_samples = doc.search, doc.num_samples
    if doc.params and not params:  # --set fixed every searched parameter: the one setting left, once
        algorithm, num_samples = "grid", 1  # (Optuna has nothing to suggest, and random draws would repeat it)
    scheduler, scheduler_args = _check_scheduler(path, doc.scheduler)
    if doc.dataset is not None and doc.dataset not in spec.datasets:
        raise SearchSpaceError(f"{path}: dataset: {doc.dataset!r} is not allowed for lab {lab}; expected one of {', '.join(spec.datasets)}")
    return Search(
        path=path, name=path.stem, lab=lab, description=str(doc.description).strip(),
        metric=metric, mode=doc.mode or spec.metrics[metric], fixed=fixed, params=params, algorithm=algorithm,
        num_samples=num_samples, scheduler=scheduler, scheduler_args=scheduler_args, dataset=doc.dataset,
        sweeps=sweeps, variants=variants, repeats=doc.repeats,
        overrides={k: fixed[k] for k in overrides or {} if k not in in_file or in_file[k] != fixed[k]},
    )


def overridden_again(search: Search, overrides: dict[str, Any]) -> str:
    """What the search file sets again over a --set value, in some of its trials; '' if nothing.

    `--set epochs=1` on a sweep search becomes the base every other sweep uses, but the epochs
    sweep's own rows still run its listed values, and a variant's values win over --set. That is
    how sweeps work, but a user who asked for one epoch must hear it (issue 20), not find 40.
    """
    said = []
    for key, value in overrides.items():
        shown = _plain(search.fixed.get(key, value))
        if key in search.sweeps:
            runs = " / ".join(_plain(v) for v in search.sweeps[key])
            said.append(f"--set {key}={shown}: the {key} sweep still runs {key}={runs} (its other sweeps use {shown})")
        for name, values in search.variants.items():
            if key in values and values[key] != search.fixed.get(key):
                said.append(f"--set {key}={shown}: variant {name!r} sets {key}={_plain(values[key])} in its trials")
    return "; ".join(said)


def _plain(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check_param(path: Path, config_cls: type, name: str, body: dict, drawn: dict[str, list]) -> Param:
    """`body`, one distribution, whose values or bounds (`drawn`) are checked already."""
    (dist, args), = body.items()
    (_, values), = drawn.items()
    where = f"params.{name}.{dist}"
    if dist in ("grid", "choice"):
        return Param(name, dist, values)
    shape = "[low, high, q]" if dist == "quniform" else "[low, high]"
    if len(args) != shape.count(",") + 1:
        raise SearchSpaceError(f"{path}: {where}: {args!r} is not allowed; expected {shape}")
    kind, numeric = field_types(config_cls)[name], int if dist == "randint" else float
    if kind is not numeric and not (numeric is float and kind is int and dist == "quniform"):
        raise SearchSpaceError(f"{path}: params.{name}: {dist} draws {'integers' if numeric is int else 'numbers'}, "
                               f"but {name} must be {describe_allowed(config_cls, name)}")
    low, high = values
    if low >= high:
        raise SearchSpaceError(f"{path}: {where}: lower bound {low} must be below upper bound {high}")
    if dist == "loguniform" and low <= 0:
        raise SearchSpaceError(f"{path}: {where}: bounds must be above 0, got {low}")
    q = args[2:] and args[2]
    if dist == "quniform" and (isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < math.inf):
        raise SearchSpaceError(f"{path}: {where}[2]: step q must be a number above 0, got {q!r}")
    return Param(name, dist, [low, high, *args[2:]])


def _check_scheduler(path: Path, value: Any) -> tuple[str, dict[str, Any]]:
    """`scheduler: NAME` or `{NAME: {grace_period: G, reduction_factor: R}}` -> (name, its rungs)."""
    if isinstance(value, str) and value in SCHEDULERS:
        value = {value: None}
    if isinstance(value, dict) and len(value) == 1:
        (kind, args), = value.items()
        if kind == "fifo" and not args:
            return "fifo", {}
        if kind in ("asha", "promotion"):
            validated(path, f"scheduler.{kind}", _models().PromotionRungs if kind == "promotion" else _models().Rungs,
                      args or {})
            return kind, {**ASHA_DEFAULTS, **(args or {})}
    raise SearchSpaceError(f"{path}: scheduler: {value!r} is not allowed; expected fifo, asha, promotion or "
                           f"{{asha|promotion: {{grace_period: 2, reduction_factor: 3}}}}")
