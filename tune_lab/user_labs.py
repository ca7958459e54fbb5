"""Labs that live outside the package: `--labs FILE.py|MODULE`, $TUNE_LAB_LABS, and installed
packages that declare the entry-point group `tune_lab.labs`.

A lab of one's own is what a shipped one is (labspec.registry): a hyperparameter dataclass
registered with `register_lab(name, module=..., ...)` and a module with `Trainer`, `load_data` and
the three report hooks, often the same file (`module=__name__`). The command line imports these
before it builds its parser (the lab names are its subcommands):

- a FILE.py is imported under its stem as module name, its folder appended to sys.path (so that
  `module=` names a sibling too); a stem that is already another importable module is refused;
- a MODULE (dotted name) with importlib.import_module;
- an entry point names a module; the installed distributions are scanned for the group without
  importlib.metadata (whose import alone costs `tune-lab --help` ~0.1-0.3 s), which is imported
  only when one declares it.

Each lab an import registers is checked against the contract at once (LabSpec.load), and records
where it came from (LabSpec.source, summary.json's `lab_source`), so that `tune-lab report` and
`resume` of its searches import it again without --labs. Trial processes import the lab's module
by its name: a local Ray this process starts has the files' folders on its workers' PYTHONPATH
(`export_pythonpath`), a joined cluster gets them as the runtime_env's `py_modules`
(`runtime_env`), and `tune-lab submit` stages them with the job (tune_lab.jobs).

Bad input is one line (TuneLabError: the CLI prints it and exits 2), before Ray starts or data loads.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import keyword
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from labspec.errors import TuneLabError
from labspec.registry import LABS, LabSpec

ENV = "TUNE_LAB_LABS"
GROUP = "tune_lab.labs"
FLAG = "--labs"
# tune-lab's own packages (pyproject's): on every node already, and what a Ray Job's working_dir carries (jobs.stage).
OWN_PACKAGES = ("tune_lab", "labspec", "trainables", "reports", "search_spaces")
ENTRY_POINT = "entry point "  # LabSpec.source of an entry point's lab: "entry point NAME (MODULE)"
# Modules a trial process imports besides those the driver has when Ray starts: a file of one of these
# names beside a lab file would be imported instead of them once its folder is on PYTHONPATH.
TRIAL_IMPORTS = ("torch", "torchvision", "numpy", "ray", "mlflow", "pandas", "pyarrow", "yaml", "tensorboardX",
                 "matplotlib", "scipy", "sklearn", "PIL", "optuna", "pydantic")


class LabsError(TuneLabError):
    """A lab of one's own could not be imported, or breaks the contract: one line, exit 2."""


@dataclass(frozen=True)
class Loaded:
    """One imported source and what it registered."""

    source: str  # what the labs record (LabSpec.source): a file's absolute path, a module name, an entry point
    module: str  # the module imported
    labs: tuple[str, ...]
    file: Path | None  # a --labs FILE.py
    installed: bool  # an entry point's, or a module under site-packages: on a cluster's nodes as tune-lab is


_LOADED: dict[str, Loaded] = {}  # by source
_CHECKED: set[str] = set()  # labs checked against the contract


# ---------------------------------------------------------------------------------------------
# What to import


def labs_in_argv(argv: Sequence[str]) -> list[str]:
    """Every `--labs X` / `--labs=X` of a command line, wherever it stands (before `--`).

    argparse also accepts the unambiguous abbreviation `--lab`, so this does too."""
    found, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            break
        if word in (FLAG, "--lab"):
            if i + 1 < len(argv):
                found.append(argv[i + 1])
            i += 2
            continue
        for prefix in (FLAG + "=", "--lab="):
            if word.startswith(prefix):
                found.append(word[len(prefix):])
        i += 1
    return found


def labs_in_env(environ: Mapping[str, str] | None = None) -> list[str]:
    return [part for part in (environ if environ is not None else os.environ).get(ENV, "").split(os.pathsep) if part.strip()]


def load_command_line(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> list[Loaded]:
    """Import what a command asks for, before its parser is built: $TUNE_LAB_LABS, then its --labs,
    then the installed entry points (a broken one is a warning, not an error: someone else's package
    must not stop every command). Raises LabsError (one line) for the first --labs / $TUNE_LAB_LABS
    that cannot be imported or breaks the contract."""
    loaded = [load(text, f"{ENV}: ") for text in labs_in_env(environ)]
    loaded += [load(text, f"{FLAG} ") for text in labs_in_argv(argv)]
    load_entry_points()
    return loaded


# ---------------------------------------------------------------------------------------------
# Importing one


def load(text: str, origin: str = f"{FLAG} ") -> Loaded:
    """Import a FILE.py or a MODULE (the same one again is a no-op) and check the labs it registers.

    `origin` starts the message of an error: "--labs ", "TUNE_LAB_LABS: ", "report X: "."""
    text = text.strip()
    where = f"{origin}{text}"
    if _looks_like_file(text):
        return _load_file(text, where)
    if not all(part.isidentifier() for part in text.split(".")):
        raise LabsError(f"{where}: neither a file (FILE.py) nor a module name (package.module)")
    return _load_module(text, where, source=text)


def _looks_like_file(text: str) -> bool:
    return text.endswith(".py") or os.sep in text or "/" in text or Path(text).expanduser().is_file()


def _load_file(text: str, where: str) -> Loaded:
    path = Path(text).expanduser()
    if not path.is_file():
        raise LabsError(f"{where}: no such file" if not path.exists() else f"{where}: not a file")
    path = path.resolve()
    if str(path) in _LOADED:
        return _LOADED[str(path)]
    if path.suffix != ".py":
        raise LabsError(f"{where}: expected a Python file (FILE.py) or a module name")
    name = path.stem
    if not name.isidentifier() or keyword.iskeyword(name):
        raise LabsError(f"{where}: {path.name} cannot be imported: {name!r} is not a Python name; "
                        f"rename the file (letters, digits and _, not starting with a digit)")
    existing = sys.modules.get(name)
    other = _file_of(existing) if existing is not None else _find(name)
    if other is not None and other != path:
        raise LabsError(f"{where}: its name {name!r} is already the module {other}; rename the file (e.g. my_{name}.py)")
    if existing is not None and other is None:  # a module with no file (a namespace package, one made in memory)
        raise LabsError(f"{where}: its name {name!r} is already a module; rename the file (e.g. my_{name}.py)")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)  # last: the lab's `module=` and its helpers resolve, nothing installed is shadowed
    return _import(name, where, source=str(path), file=path, installed=False)


def _load_module(name: str, where: str, source: str, installed: bool | None = None, check_now: bool = True) -> Loaded:
    if source in _LOADED:
        return _LOADED[source]
    if installed is None:
        installed = _is_installed(name)
    return _import(name, where, source=source, file=None, installed=installed, check_now=check_now)


def _import(name: str, where: str, source: str, file: Path | None, installed: bool, check_now: bool = True) -> Loaded:
    before = set(LABS)
    was_imported = name in sys.modules
    try:
        importlib.import_module(name)
    except (Exception, SystemExit) as exc:  # a syntax error, a missing package, the file's own raise ...
        _forget(name, before, was_imported)
        raise LabsError(f"{where}: {_last_line(exc, file)}") from None
    new = [lab for lab in LABS if lab not in before]
    labs = new or [lab for lab, spec in LABS.items() if _registered_by(spec, name)]
    if not labs:
        _forget(name, before, was_imported)
        raise LabsError(f"{where}: registers no lab (a lab's file calls labspec.registry.register_lab("
                        f"NAME, module=__name__, ...) on its hyperparameter dataclass; see docs/adding-a-lab.md)")
    for lab in labs:
        if LABS[lab].source is None:
            LABS[lab] = dataclasses.replace(LABS[lab], source=source)
    if check_now:  # an entry point's labs are checked when a command uses them (tune-lab --help stays quick)
        try:
            for lab in labs:
                check(lab)
        except TuneLabError as exc:
            _forget(name, before, was_imported)
            raise LabsError(f"{where}: {exc}") from None
    loaded = Loaded(source=source, module=name, labs=tuple(labs), file=file, installed=installed)
    _LOADED[source] = loaded
    return loaded


def check(lab: str) -> None:
    """The lab's module against the contract (once per lab): LabContractError, one line, names what lacks."""
    if lab in _CHECKED or lab not in LABS:
        return
    spec = LABS[lab]
    try:
        spec.load()
    except TuneLabError:
        raise
    except (Exception, SystemExit) as exc:  # `module=` names another module, which does not import
        raise LabsError(f"lab {lab!r}: its module {spec.module_name}: {_last_line(exc, None)}") from None
    _CHECKED.add(lab)


def check_if_own(lab: str | None) -> None:
    """Before a command runs lab `lab`: check it now if it is one of one's own not checked yet (an
    entry point's), so that a broken one is one line before Ray starts."""
    if lab in LABS and LABS[lab].source is not None:
        check(lab)


def _registered_by(spec: LabSpec, module: str) -> bool:
    return getattr(spec.config, "__module__", None) == module or spec.module_name == module


def _forget(name: str, before: set[str], was_imported: bool) -> None:
    """Undo a failed import: its labs unregistered, its module (and the half-imported ones under it) gone,
    so that a fixed file can be imported again in the same process (a notebook)."""
    for lab in [lab for lab in LABS if lab not in before]:
        del LABS[lab]
    if not was_imported:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def _last_line(exc: BaseException, file: Path | None) -> str:
    """'ExceptionType: message' of the import's error, and where in the lab's file it was raised."""
    import traceback

    if isinstance(exc, SyntaxError):  # its message names the file and line already
        return f"{type(exc).__name__}: {exc.msg} ({Path(exc.filename or '?').name}, line {exc.lineno})"
    lines = traceback.format_exception_only(type(exc), exc)
    last = (lines[-1] if lines else type(exc).__name__).strip()
    if file is not None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == file]
        if frames:
            last += f" ({file.name}, line {frames[-1].lineno})"
    return last


def _file_of(module: Any) -> Path | None:
    location = getattr(module, "__file__", None)
    return Path(location).resolve() if location else None


def _find(name: str) -> Path | None:
    """Where `import name` would come from now (without importing it), if anywhere."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin in (None, "namespace"):  # a namespace package yields to any module of the name
        return None
    if spec.origin in ("built-in", "frozen"):
        return Path(f"<{spec.origin} module {name}>")
    return Path(spec.origin).resolve()


def _is_installed(name: str) -> bool:
    """Whether module `name` comes from an installed distribution (site-packages / dist-packages)."""
    top = _find(name.split(".")[0])
    return top is not None and any(part in ("site-packages", "dist-packages") for part in top.parts)


# ---------------------------------------------------------------------------------------------
# Entry points


def load_entry_points() -> list[Loaded]:
    """Import the modules the installed `tune_lab.labs` entry points name. A broken one is one warning line."""
    if not _declared(GROUP):
        return []
    from importlib.metadata import entry_points

    loaded = []
    for point in entry_points(group=GROUP):
        source = f"{ENTRY_POINT}{point.name} ({point.module})"
        try:
            loaded.append(_load_module(point.module, f"{ENTRY_POINT}{point.name} = {point.value}", source=source,
                                       installed=True, check_now=False))
        except TuneLabError as exc:
            print(f"tune-lab: warning: {exc}; its labs are left out", file=sys.stderr, flush=True)
    return loaded


def _declared(group: str) -> bool:
    """Whether any distribution on sys.path declares entry points of `group`: each dist-info's
    entry_points.txt read, no more (a few ms where importlib.metadata takes ~0.2 s to import)."""
    header = f"[{group}]"
    for entry in sys.path:
        try:
            listing = os.scandir(entry or ".")
        except OSError:  # a zip, a folder that is gone
            continue
        with listing:
            for item in listing:
                if item.name.endswith((".dist-info", ".egg-info")):
                    try:
                        with open(os.path.join(item.path, "entry_points.txt"), encoding="utf-8") as f:
                            if header in f.read():
                                return True
                    except OSError:
                        continue
    return False


# ---------------------------------------------------------------------------------------------
# The lab of a search that ran before: report, resume


def ensure_lab(lab: str, source: str | None, where: str) -> None:
    """Make lab `lab` registered again from where its search recorded it came from.

    `where` starts the message of an error ("report mycnn-try"); one line names the file that is gone."""
    if lab in LABS:
        return
    if not source:
        raise LabsError(f"{where}: unknown lab {lab!r}; a lab of your own needs {FLAG} FILE.py (or {ENV})")
    if source.startswith(ENTRY_POINT):
        module = source[source.rfind("(") + 1:].rstrip(")")
        if importlib.util.find_spec(module.split(".")[0]) is None:
            raise LabsError(f"{where}: lab {lab!r} came from {source}, which is not installed here; install its "
                            f"package, or pass {FLAG} FILE.py")
        _load_module(module, f"{where}: {source}", source=source, installed=True)
    elif Path(source).is_absolute():
        if not Path(source).is_file():
            raise LabsError(f"{where}: lab {lab!r} came from {source}, which is gone; pass {FLAG} with where it is now")
        load(source, f"{where}: ")
    else:
        load(source, f"{where}: ")
    if lab not in LABS:
        raise LabsError(f"{where}: {source} no longer registers lab {lab!r}; pass {FLAG} with the file that does")
    check(lab)


def recorded_lab(folder: Path) -> tuple[str, str | None] | None:
    """(lab, lab_source) of the search in `folder`, from its summary.json, else its search.json (and
    that search's MLflow parent run, where summary.json was never written: a killed driver)."""
    from tune_lab.paths import STATE_FILE

    summary = _read_json(folder / "summary.json") if folder.is_dir() else _read_json(folder)
    if summary and summary.get("lab"):
        return summary["lab"], summary.get("lab_source")
    state = _read_json(folder / STATE_FILE)
    if not state or not (state.get("search") or {}).get("lab"):
        return None
    lab = state["search"]["lab"]
    if state.get("lab_source") or lab in LABS:
        return lab, state.get("lab_source")
    return lab, _source_in_mlflow(state.get("tracking") or {})


def _source_in_mlflow(tracking: Mapping[str, Any]) -> str | None:
    if not tracking.get("tracking_uri") or not tracking.get("parent_run_id"):
        return None
    try:
        import json

        from mlflow.tracking import MlflowClient

        from reports.source import SPEC_TAG

        run = MlflowClient(tracking_uri=tracking["tracking_uri"]).get_run(tracking["parent_run_id"])
        return json.loads(run.data.tags.get(SPEC_TAG) or "{}").get("lab_source")
    except Exception:  # no store, no run: the lab stays unknown, and says so
        return None


def ensure_lab_of(target: str, storage: str | None, command: str) -> None:
    """Before `tune-lab report|resume TARGET`: the lab of the search there, imported from where it came from."""
    from tune_lab import paths

    root = paths.results_root(storage)
    for candidate in (Path(target), Path(root) / target):
        if (candidate.is_file() and candidate.name == "summary.json") or candidate.is_dir():
            found = recorded_lab(candidate)
            if found is not None:
                ensure_lab(found[0], found[1], f"{command} {target}")
                return


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object tune-lab wrote (tune_lab.results.read_json), else None."""
    from tune_lab.results import read_json

    data = read_json(path)
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------------------------------------
# Reaching the trial processes


def loaded() -> list[Loaded]:
    return list(_LOADED.values())


def pythonpath_folders() -> list[str]:
    """The folders of the lab files imported here: what a local Ray's workers need on PYTHONPATH."""
    return list(dict.fromkeys(str(item.file.parent) for item in _LOADED.values() if item.file is not None))


def export_pythonpath(environ: Any = None) -> None:
    """Put the lab files' folders on PYTHONPATH (before a local Ray starts: its workers inherit it).

    There they come before site-packages and the standard library: a file beside a lab file named as a
    module the trials import (numpy.py, random.py ...) would replace it, which is refused in one line."""
    environ = os.environ if environ is None else environ
    folders = pythonpath_folders()
    if not folders:
        return
    imported = {name.split(".")[0] for name in sys.modules} | set(TRIAL_IMPORTS)
    lab_modules = {item.module.split(".")[0] for item in _LOADED.values()}
    for folder in folders:
        clash = sorted(name for name in _module_names(Path(folder)) if name in imported and name not in lab_modules
                       and not name.startswith("__") and _find_in(name, folder))
        if clash:
            raise LabsError(f"{FLAG}: {folder} holds {_as_file(Path(folder), clash[0])}, which trial processes "
                            f"would import instead of the module {clash[0]} (the folder is on their PYTHONPATH); "
                            f"move the lab file to a folder of its own, or rename that file")
    present = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    environ["PYTHONPATH"] = os.pathsep.join(present + [f for f in folders if f not in present])


def _module_names(folder: Path) -> set[str]:
    names = set()
    try:
        with os.scandir(folder) as listing:
            for item in listing:
                if item.name.endswith(".py") and item.is_file():
                    names.add(item.name[:-3])
                elif item.is_dir() and (Path(item.path) / "__init__.py").is_file():
                    names.add(item.name)
    except OSError:
        pass
    return {n for n in names if n.isidentifier()}


def _find_in(name: str, folder: str) -> bool:
    """Whether module `name` exists outside `folder` too (one only there shadows nothing)."""
    module = sys.modules.get(name)
    where = _file_of(module) if module is not None else _find(name)
    if module is not None and where is None:
        return True  # built in
    return where is not None and Path(folder) not in where.parents


def _as_file(folder: Path, name: str) -> str:
    return f"{name}.py" if (folder / f"{name}.py").is_file() else f"{name}/"


def ship_paths(items: Iterable[Loaded] | None = None) -> list[str]:
    """What a joined cluster's trial processes need (Ray's runtime_env `py_modules` takes a .py file or a
    package folder): each lab file, the module a lab's `module=` names where that is another file of
    its folder, and each --labs MODULE's top-level package. Installed labs (entry points, site-packages)
    are the nodes' to install, as tune-lab itself is."""
    paths: list[str] = []
    for item in _LOADED.values() if items is None else items:
        if item.installed:
            continue
        if item.file is not None:
            paths.append(str(item.file))
        else:
            paths += _package_path(item.module)
        for lab in item.labs:
            spec = LABS.get(lab)
            if spec is not None and isinstance(spec.module, str):
                paths += [p for p in _package_path(spec.module) if item.file is None or Path(p).parent == item.file.parent]
    return list(dict.fromkeys(paths))


def _package_path(module: str) -> list[str]:
    """The top-level package folder (or single file) of `module`, unless it is tune-lab's own or installed."""
    top = module.split(".")[0]
    if top in OWN_PACKAGES or _is_installed(top):
        return []
    imported = sys.modules.get(top)
    if imported is not None and getattr(imported, "__path__", None) is not None:
        folders = list(imported.__path__)
        return [str(Path(folders[0]).resolve())] if len(folders) == 1 else []
    where = _file_of(imported) if imported is not None else _find(top)
    if where is None or not where.is_file():
        return []
    return [str(where.parent)] if where.name == "__init__.py" else [str(where)]


def runtime_env() -> dict[str, Any] | None:
    """The runtime_env a driver joining a cluster passes to ray.init: the labs' files as `py_modules`.

    None in a Ray Job's driver (`tune-lab submit`): the labs are at the top of the job's working_dir
    already (tune_lab.jobs.stage_labs), which Ray puts on the path of every process of the job."""
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):  # set by Ray's job supervisor for the job's driver
        return None
    modules = ship_paths()
    return {"py_modules": modules} if modules else None


def staged_labs(lab: str) -> list[Loaded]:
    """The imported sources `lab` needs on a cluster (for `tune-lab submit`): the one that registered it."""
    spec = LABS.get(lab)
    if spec is None or spec.source is None:
        return []
    item = _LOADED.get(spec.source)
    return [item] if item is not None and not item.installed else []
