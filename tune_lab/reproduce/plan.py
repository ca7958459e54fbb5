"""Plans: what `tune-lab reproduce LAB` runs, read and checked before Ray or torch is imported.

A plan (search_spaces/reproduce/LAB.yaml, or the user's own file) lists the searches that make up a
lab's report, in order, each with the question it answers and a `quick:` block that shrinks it for
`--quick`. `load_plan` checks the file level by level (a refusal is one line naming the file, the
key and what it allows) and loads every section's search as `tune-lab LAB --search` would, so a
plan that would fail in its third section fails before its first one runs.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from labspec.registry import LABS, lab_names
from tune_lab.spaces import SEARCH_DIR, Search, SearchSpaceError, load_search, read_yaml, validated
from tune_lab.usage import UsageError

PLAN_DIR = SEARCH_DIR / "reproduce"
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


def plan_names() -> list[str]:
    return sorted(p.stem for p in PLAN_DIR.glob("*.yaml"))


def plan_path(name_or_path: str) -> Path:
    """A shipped plan's name (lab1 ... lab5) or the path of the user's own plan file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate.resolve()
    path = PLAN_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UsageError(f"reproduce: unknown lab {name_or_path!r}; known: {', '.join(plan_names())} (or give a plan's .yaml path)")
    return path


@functools.cache
def _models() -> SimpleNamespace:
    """A plan file's shape (pydantic, strict, no unknown keys); each level is checked on its own, so a
    refusal names the file, the key path and what the key allows."""
    from pydantic import BaseModel, ConfigDict, Field

    strict = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    def text() -> Any:
        return Field(min_length=1, description="a non-empty line of text")

    def overrides() -> Any:
        return Field(default_factory=dict, description="a mapping of parameter: value, as --set takes them")

    def samples() -> Any:
        return Field(None, ge=1, description="an integer >= 1 (training samples kept, as --subset)")

    def trials() -> Any:
        return Field(None, ge=1, description="an integer >= 1 (trials of a random / optuna search)")

    class PlanFile(BaseModel):
        model_config = strict
        title: str = text()
        question: str = text()
        sections: list[dict] = Field(min_length=1, description="a non-empty list of sections, each a mapping")

    class SectionFile(BaseModel):
        model_config = strict
        key: str = Field(pattern=KEY_PATTERN, description="a folder name: lower-case letters, digits, - and _")
        title: str = text()
        question: str = text()
        lab: str = Field(description="a lab: " + ", ".join(lab_names()))
        search: str = Field(min_length=1, description="a search of the lab (see `tune-lab list`) or a .yaml path")
        dataset: Optional[str] = Field(None, description="one of the lab's datasets")
        set: dict = overrides()
        subset: Optional[int] = samples()
        num_samples: Optional[int] = trials()
        quick: dict = Field(default_factory=dict, description="a mapping of subset, set, num_samples, skip")
        accept: dict[str, float] = Field(default_factory=dict, description="a mapping of metric: bound (a number)")

    class QuickFile(BaseModel):
        model_config = strict
        subset: Optional[int] = samples()
        set: dict = overrides()
        num_samples: Optional[int] = trials()
        skip: Optional[str] = Field(None, min_length=1, description="why --quick leaves this section out (text)")

    return SimpleNamespace(PlanFile=PlanFile, SectionFile=SectionFile, QuickFile=QuickFile)


@dataclass
class Section:
    key: str
    title: str
    question: str
    search: Search  # loaded with the section's (and, with --quick, its quick block's) overrides
    dataset: str | None
    subset: int | None
    num_samples: int | None
    skipped: str | None = None  # why --quick leaves it out
    # The lab's acceptance: metric -> bound its best trial must reach (at most for a metric where lower is
    # better, at least where higher is), said met or not in the section's answer.
    accept: dict[str, float] = field(default_factory=dict)

    @property
    def lab(self) -> str:
        return self.search.lab


@dataclass
class Plan:
    path: Path
    name: str
    title: str
    question: str
    quick: bool
    sections: list[Section]


def _checked(path: Path, where: str, model: Any, value: Any) -> Any:
    """`value` checked by `model`; a missing key is named as such (pydantic would show the whole mapping)."""
    if isinstance(value, dict):
        for name, info in model.model_fields.items():
            if info.is_required() and name not in value:
                raise SearchSpaceError(f"{path}: {where + ': ' if where else ''}missing key {name!r} ({info.description})")
    return validated(path, where, model, value)


def load_plan(name_or_path: str, quick: bool = False) -> Plan:
    """Read and check a plan; every section's search is loaded (with its overrides) as `tune-lab LAB --search` would."""
    path = plan_path(name_or_path)
    models = _models()
    doc = _checked(path, "", models.PlanFile, read_yaml(path))
    sections, keys = [], set()
    for i, raw in enumerate(doc.sections):
        where = f"sections[{i}]"
        s = _checked(path, where, models.SectionFile, raw)
        q = _checked(path, f"{where}.quick", models.QuickFile, s.quick)
        if s.key in keys:
            raise SearchSpaceError(f"{path}: {where}.key: {s.key!r} is used twice; each section needs its own folder name")
        keys.add(s.key)
        if s.lab not in LABS:
            raise SearchSpaceError(f"{path}: {where}.lab: unknown lab {s.lab!r}; allowed: {', '.join(lab_names())}")
        if s.dataset is not None and s.dataset not in LABS[s.lab].datasets:
            raise SearchSpaceError(f"{path}: {where}.dataset: {s.dataset!r} is not allowed for lab {s.lab}; "
                                   f"expected one of {', '.join(LABS[s.lab].datasets)}")
        for metric in s.accept:
            if metric not in LABS[s.lab].metrics:
                raise SearchSpaceError(f"{path}: {where}.accept: unknown metric {metric!r} of lab {s.lab}; "
                                       f"allowed: {', '.join(LABS[s.lab].metrics)}")
        overrides = {**s.set, **q.set} if quick else dict(s.set)
        try:
            search = load_search(s.search, s.lab, overrides)
        except SearchSpaceError as exc:
            # a set / quick.set value is refused by load_search as --set KEY: said here as the plan's key
            raise SearchSpaceError(f"{path}: {where} ({s.key}): {str(exc).replace('--set ', 'set.')}") from None
        sections.append(Section(
            key=s.key, title=s.title.strip(), question=s.question.strip(), search=search, dataset=s.dataset,
            subset=(q.subset or s.subset) if quick else s.subset,
            num_samples=(q.num_samples or s.num_samples) if quick else s.num_samples,
            skipped=q.skip if quick else None, accept=dict(s.accept),
        ))
    return Plan(path=path, name=path.stem, title=doc.title.strip(), question=doc.question.strip(), quick=quick,
                sections=sections)


# Why a section trains again what an earlier one trained, rather than reusing its trial: each section
# is one ordinary search, whose scheduler (ASHA's rungs), table, best trial and checkpoint compare its
# own trials; a borrowed trial would need its checkpoints, history and MLflow run copied in and the
# scheduler told about results it never saw. The cost is the duplicate trials' time, said in the plan.
RETRAIN_WHY = ("not reused: each section is its own search, whose ASHA rungs, table and best checkpoint compare "
               "its own trials; the same settings and seed give the same numbers")


def retrained(plan: Plan) -> dict[str, list[tuple[str, str]]]:
    """Section key -> [(setting, earlier section key)] for each trial configuration an earlier section of the
    plan already trains on the same data (dataset and subset): what reuse would save, named."""
    from reports.table import setting_label

    seen: list[tuple[dict[str, Any], str | None, int | None, str, str]] = []
    out: dict[str, list[tuple[str, str]]] = {}
    for section in plan.sections:
        if section.skipped:
            continue
        search = section.search
        dataset = section.dataset or search.dataset
        varied = search.varied_by_cases() + list(search.params)
        for config in search.trial_configs():
            label = setting_label({"setting": {k: config.get(k) for k in varied}, "trial_id": "?"},
                                  {"sweeps": search.sweeps, "fixed": search.fixed} if search.sweeps else None)
            earlier = next((f"{key}'s {was}" for c, d, n, key, was in seen
                            if c == config and d == dataset and n == section.subset), None)
            if earlier is not None:
                out.setdefault(section.key, []).append((label, earlier))
            else:
                seen.append((config, dataset, section.subset, section.key, label))
    return out


def retrained_lines(plan: Plan) -> list[str]:
    """One line per section that retrains an earlier section's configurations, for the plan and the report."""
    return [f"Section {key} retrains {', '.join(f'{label} (= {earlier})' for label, earlier in pairs)}: {RETRAIN_WHY}."
            for key, pairs in retrained(plan).items()]
