"""Search files: read, check against the lab's hyperparameters, turn into Ray Tune objects.

Everything here runs before Ray or torch is imported, so a bad file costs well under a
second and the message names the file, the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainables.config import MAX_REPEATS, coerce, describe_allowed, field_types
from trainables.registry import LabSpec, get_lab

import search_spaces

SEARCH_DIR = Path(search_spaces.__file__).parent
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint", "quniform")
SEARCH_ALGORITHMS = ("grid", "random", "optuna")
SCHEDULERS = ("asha", "promotion", "fifo")  # asha: Ray's stopping ASHA; promotion: tune_lab.schedulers.PromotionASHA
TOP_LEVEL_KEYS = (
    "description", "lab", "metric", "mode", "fixed", "params", "search", "num_samples", "scheduler", "dataset",
    "sweeps", "variants", "repeats",
)
CASE_KEY = "case"  # the trial config key holding a sweep case's values (see `cases`)
MAX_NUM_SAMPLES = 10_000
ASHA_DEFAULTS = {"grace_period": 1, "reduction_factor": 3}


class SearchSpaceError(ValueError):
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

        from trainables.config import defaults

        base = {**defaults(self.spec.config), **self.fixed}
        listed = {name: p.args for name, p in self.params.items() if p.distribution in ("grid", "choice")}
        combos = [dict(zip(listed, values)) for values in itertools.product(*listed.values())]
        return [{**base, **combo, **case} for combo in combos for case in self.cases() or [{}]]

    def varied_by_cases(self) -> list[str]:
        return (["variant"] if self.variants else []) + list(self.sweeps)

    @property
    def spec(self) -> LabSpec:
        return get_lab(self.lab)

    def max_epochs(self) -> int:
        """Upper bound on a trial's epochs: ASHA's max_t."""
        if "epochs" in self.sweeps:
            return int(max(self.sweeps["epochs"]))
        if "epochs" in self.params:
            p = self.params["epochs"]
            return int(max(p.args) if p.distribution in ("grid", "choice") else p.args[1])
        return int(self.fixed.get("epochs", self.spec.config.__dataclass_fields__["epochs"].default))


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


def _read_yaml(path: Path) -> dict[str, Any]:
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


def _check_value(path: Path, where: str, config_cls: type, key: str, value: Any) -> Any:
    try:
        return coerce(config_cls, key, value)
    except ValueError as exc:
        raise SearchSpaceError(f"{path}: {where}: {exc}") from None


def _check_param(path: Path, config_cls: type, name: str, body: Any) -> Param:
    where = f"params.{name}"
    if not isinstance(body, dict) or len(body) != 1:
        raise SearchSpaceError(f"{path}: {where}: expected one distribution, e.g. {{grid: [a, b]}}; allowed: {', '.join(DISTRIBUTIONS)}")
    (dist, args), = body.items()
    if dist not in DISTRIBUTIONS:
        raise SearchSpaceError(f"{path}: {where}: unknown distribution {dist!r}; allowed: {', '.join(DISTRIBUTIONS)}")
    kind = field_types(config_cls)[name]
    if dist in ("grid", "choice"):
        if not isinstance(args, list) or not args:
            raise SearchSpaceError(f"{path}: {where}.{dist}: expected a non-empty list of values")
        return Param(name, dist, [_check_value(path, f"{where}.{dist}[{i}]", config_cls, name, v) for i, v in enumerate(args)])
    wanted = {"uniform": 2, "loguniform": 2, "randint": 2, "quniform": 3}[dist]
    if not isinstance(args, list) or len(args) != wanted:
        shape = "[low, high, q]" if wanted == 3 else "[low, high]"
        raise SearchSpaceError(f"{path}: {where}.{dist}: expected {shape}")
    numeric = int if dist == "randint" else float
    if kind is not numeric and not (numeric is float and kind is int and dist == "quniform"):
        raise SearchSpaceError(
            f"{path}: {where}: {dist} draws {'integers' if numeric is int else 'numbers'}, but {name} must be {describe_allowed(config_cls, name)}"
        )
    low, high = (_check_value(path, f"{where}.{dist}", config_cls, name, v) for v in args[:2])
    if low >= high:
        raise SearchSpaceError(f"{path}: {where}.{dist}: lower bound {low} must be below upper bound {high}")
    if dist == "loguniform" and low <= 0:
        raise SearchSpaceError(f"{path}: {where}.loguniform: bounds must be above 0, got {low}")
    rest = args[2:]
    if dist == "quniform" and (isinstance(rest[0], bool) or not isinstance(rest[0], (int, float)) or rest[0] <= 0):
        raise SearchSpaceError(f"{path}: {where}.quniform: step q must be a number above 0, got {rest[0]!r}")
    return Param(name, dist, [low, high, *rest])


def load_search(name_or_path: str, lab: str, overrides: dict[str, Any] | None = None) -> Search:
    """Read and check a search; `overrides` (from --set) replace fixed values or searched ones."""
    path = search_path(lab, name_or_path)
    if not path.exists() and path.parent.parent == SEARCH_DIR:
        known = ", ".join(available_searches(lab)) or "none"
        raise SearchSpaceError(f"unknown search {name_or_path!r} for lab {lab}; known searches: {known} (or give a .yaml path)")
    doc = _read_yaml(path)
    unknown = sorted(set(doc) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise SearchSpaceError(f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    file_lab = doc.get("lab", lab)
    try:
        spec = get_lab(file_lab)
    except KeyError as exc:
        raise SearchSpaceError(f"{path}: lab: {exc.args[0]}") from None
    if file_lab != lab:
        raise SearchSpaceError(f"{path}: lab: the file is for lab {file_lab!r}, but the command runs lab {lab!r}")
    config_cls = spec.config
    known_keys = list(field_types(config_cls))

    def check_key(where: str, key: Any) -> None:
        if key not in known_keys:
            raise SearchSpaceError(f"{path}: {where}: unknown parameter {key!r} for lab {lab}; allowed: {', '.join(known_keys)}")

    metric = doc.get("metric", spec.metric)
    metrics = spec.metrics
    if metric not in metrics:
        raise SearchSpaceError(f"{path}: metric: unknown metric {metric!r} for lab {lab}; allowed: {', '.join(metrics)}")
    mode = doc.get("mode", spec.metrics[metric])
    if mode not in ("min", "max"):
        raise SearchSpaceError(f"{path}: mode: {mode!r} is not allowed; expected min or max")

    fixed_doc = doc.get("fixed") or {}
    if not isinstance(fixed_doc, dict):
        raise SearchSpaceError(f"{path}: fixed: expected a mapping of parameter: value")
    fixed = {}
    for key, value in fixed_doc.items():
        check_key(f"fixed.{key}", key)
        fixed[key] = _check_value(path, f"fixed.{key}", config_cls, key, value)

    params_doc = doc.get("params") or {}
    if not isinstance(params_doc, dict):
        raise SearchSpaceError(f"{path}: params: expected a mapping of parameter: {{distribution: arguments}}")
    params = {}
    for key, body in params_doc.items():
        check_key(f"params.{key}", key)
        if key in fixed:
            raise SearchSpaceError(f"{path}: params.{key}: is also in fixed; a parameter is either fixed or searched")
        params[key] = _check_param(path, config_cls, key, body)

    for key, value in (overrides or {}).items():
        if key not in known_keys:
            raise SearchSpaceError(f"--set {key}: unknown parameter for lab {lab}; allowed: {', '.join(known_keys)}")
        try:
            fixed[key] = coerce(config_cls, key, value)
        except ValueError as exc:
            raise SearchSpaceError(f"--set {exc}") from None
        params.pop(key, None)

    algorithm = doc.get("search", "grid")
    if algorithm not in SEARCH_ALGORITHMS:
        raise SearchSpaceError(f"{path}: search: {algorithm!r} is not allowed; expected one of {', '.join(SEARCH_ALGORITHMS)}")
    for p in params.values():
        if algorithm == "grid" and p.distribution != "grid":
            raise SearchSpaceError(f"{path}: params.{p.name}: search: grid takes only grid distributions; use search: random or optuna for {p.distribution}")
        if algorithm == "optuna" and p.distribution == "grid":
            raise SearchSpaceError(f"{path}: params.{p.name}: Optuna does not take grid; use choice")

    repeats = doc.get("repeats", 1)
    if not valid_repeats(repeats):
        raise SearchSpaceError(f"{path}: repeats: {repeats!r} is not allowed; {REPEATS_ALLOWED}")

    num_samples = doc.get("num_samples", 1)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 1 <= num_samples <= MAX_NUM_SAMPLES:
        raise SearchSpaceError(f"{path}: num_samples: {num_samples!r} is not allowed; expected an integer from 1 to {MAX_NUM_SAMPLES}")

    scheduler, scheduler_args = _check_scheduler(path, doc.get("scheduler", "fifo"))
    sweeps, variants = _check_sweeps(path, config_cls, doc, fixed, params, known_keys)
    dataset = doc.get("dataset")
    if dataset is not None and dataset not in spec.datasets:
        raise SearchSpaceError(f"{path}: dataset: {dataset!r} is not allowed for lab {lab}; expected one of {', '.join(spec.datasets)}")

    return Search(
        path=path, name=path.stem, lab=lab, description=str(doc.get("description", "")).strip(),
        metric=metric, mode=mode, fixed=fixed, params=params, algorithm=algorithm,
        num_samples=num_samples, scheduler=scheduler, scheduler_args=scheduler_args, dataset=dataset,
        sweeps=sweeps, variants=variants, repeats=repeats,
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


REPEATS_ALLOWED = f"expected an integer from 1 to {MAX_REPEATS} (seeds per configuration)"


def valid_repeats(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 1 <= value <= MAX_REPEATS


def _check_sweeps(path: Path, config_cls: type, doc: dict[str, Any], fixed: dict[str, Any],
                  params: dict[str, Param], known_keys: list[str]) -> tuple[dict[str, list[Any]], dict[str, dict[str, Any]]]:
    sweeps_doc, variants_doc = doc.get("sweeps") or {}, doc.get("variants") or {}
    if not isinstance(sweeps_doc, dict):
        raise SearchSpaceError(f"{path}: sweeps: expected a mapping of parameter: [values]")
    if not isinstance(variants_doc, dict):
        raise SearchSpaceError(f"{path}: variants: expected a mapping of name: {{parameter: value}}")
    if variants_doc and not sweeps_doc:
        raise SearchSpaceError(f"{path}: variants: only used with sweeps")
    sweeps = {}
    for key, values in sweeps_doc.items():
        if key not in known_keys:
            raise SearchSpaceError(f"{path}: sweeps.{key}: unknown parameter {key!r}; allowed: {', '.join(known_keys)}")
        if key in params:
            raise SearchSpaceError(f"{path}: sweeps.{key}: is also in params; a parameter is either swept or searched")
        if not isinstance(values, list) or not values:
            raise SearchSpaceError(f"{path}: sweeps.{key}: expected a non-empty list of values")
        if key not in fixed:
            raise SearchSpaceError(f"{path}: sweeps.{key}: needs a base value in fixed (the setting the other sweeps use)")
        sweeps[key] = [_check_value(path, f"sweeps.{key}[{i}]", config_cls, key, v) for i, v in enumerate(values)]
    variants = {}
    for name, values in variants_doc.items():
        if not isinstance(values, dict):
            raise SearchSpaceError(f"{path}: variants.{name}: expected a mapping of parameter: value")
        for key, value in values.items():
            if key not in known_keys:
                raise SearchSpaceError(f"{path}: variants.{name}.{key}: unknown parameter {key!r}; allowed: {', '.join(known_keys)}")
            if key in sweeps:
                raise SearchSpaceError(f"{path}: variants.{name}.{key}: is swept; a variant may not change it")
        variants[str(name)] = {k: _check_value(path, f"variants.{name}.{k}", config_cls, k, v) for k, v in values.items()}
    return sweeps, variants


def _check_scheduler(path: Path, value: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str) and value in SCHEDULERS:
        return value, dict(ASHA_DEFAULTS) if value != "fifo" else {}
    if isinstance(value, dict) and len(value) == 1:
        (kind, args), = value.items()
        if kind == "fifo" and not args:
            return "fifo", {}
        if kind in ("asha", "promotion"):
            args = args or {}
            if not isinstance(args, dict) or set(args) - set(ASHA_DEFAULTS):
                raise SearchSpaceError(f"{path}: scheduler.{kind}: allowed keys: {', '.join(ASHA_DEFAULTS)}")
            merged = {**ASHA_DEFAULTS, **args}
            g, rf = merged["grace_period"], merged["reduction_factor"]
            if isinstance(g, bool) or not isinstance(g, int) or g < 1:
                raise SearchSpaceError(f"{path}: scheduler.{kind}.grace_period: {g!r} is not allowed; expected an integer >= 1")
            if isinstance(rf, bool) or not isinstance(rf, (int, float)) or rf <= 1:
                raise SearchSpaceError(f"{path}: scheduler.{kind}.reduction_factor: {rf!r} is not allowed; expected a number > 1")
            return kind, merged
    raise SearchSpaceError(f"{path}: scheduler: {value!r} is not allowed; expected fifo, asha, promotion or "
                           f"{{asha|promotion: {{grace_period: 2, reduction_factor: 3}}}}")


# --- turning a checked search into Ray Tune objects (imports Ray) ---------------------------

def param_space(search: Search, seed: int | None = None) -> dict[str, Any]:
    from ray import tune

    def domain(p: Param):
        a = p.args
        if p.distribution == "grid":
            return tune.grid_search(a)
        if p.distribution == "choice":
            return tune.choice(a)
        if p.distribution == "uniform":
            return tune.uniform(a[0], a[1])
        if p.distribution == "loguniform":
            return tune.loguniform(a[0], a[1])
        if p.distribution == "randint":
            return tune.randint(a[0], a[1] + 1)  # inclusive upper bound, like random.randint
        return tune.quniform(a[0], a[1], a[2])

    space: dict[str, Any] = dict(search.fixed)
    if seed is not None:
        space["seed"] = seed
    if search.repeats > 1:  # read by run_trial; logged to MLflow as a param with the config
        space["repeats"] = search.repeats
    space.update({name: domain(p) for name, p in search.params.items()})
    if search.sweeps:
        space[CASE_KEY] = tune.grid_search(search.cases())
    return space


def search_algorithm(search: Search, seed: int | None):
    """Optuna for `search: optuna`; for random search a seeded variant generator when a seed is given.

    Ray's default generator (used when this returns None) draws random samples unseeded, so two
    runs with the same --seed would try different settings, e.g. FIFO and ASHA in a comparison.
    """
    if search.algorithm == "random" and seed is not None:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=seed)
    if search.algorithm != "optuna":
        return None  # Ray's default variant generator handles the grid (and unseeded random search)
    from tune_lab.schedulers import RungOptunaSearch  # OptunaSearch that tells Optuna a stopped trial was pruned

    return RungOptunaSearch(seed=seed, max_t=search.max_epochs())


def scheduler(search: Search, name: str | None = None, *, slots: int | None = None, state_file: str | None = None):
    """Ray's FIFO or (stopping) ASHA, or tune-lab's promotion ASHA (`slots` and `state_file`: see PromotionASHA)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if (name or search.scheduler) == "fifo":
        return FIFOScheduler()
    args = search.scheduler_args or ASHA_DEFAULTS
    max_t = search.max_epochs()
    if (name or search.scheduler) == "promotion":
        from tune_lab.schedulers import PromotionASHA

        return PromotionASHA(max_t=max_t, grace_period=min(args["grace_period"], max_t),
                             reduction_factor=args["reduction_factor"], slots=slots, state_file=state_file)
    return ASHAScheduler(
        time_attr="training_iteration", max_t=max_t,
        grace_period=min(args["grace_period"], max_t), reduction_factor=args["reduction_factor"],
    )
