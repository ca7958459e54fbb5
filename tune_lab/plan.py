"""A checked search (tune_lab.spaces) turned into what Ray Tune runs: each trial's resources and how many
run at once, the rungs, the param space, the searcher, the scheduler, the trainable and the `Tuner`.

spaces.py reads and checks a search file without Ray; this module is the one place that builds Ray's
objects from it, and `runner.run_search` calls it once (`make`) and then asks the `Plan`. `tune-lab LAB
--search X --dry-run` prints `Plan.describe()`: the whole `Tuner` call, with nothing started.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.record import Header
from labspec.files import is_remote
from labspec.registry import LabData
from tune_lab import capacity, paths
from tune_lab.options import SearchOptions
from tune_lab.paths import SCHEDULER_STATE, STATE_FILE
from tune_lab.spaces import ASHA_DEFAULTS, CASE_KEY, FINALISTS, Param, Search

# What Optuna and random search draw from without --seed: the trials' own default seed (the labs' configs), so
# that the same command draws the same settings every time (issue 31); Ray's and Optuna's default is a fresh one.
DRAW_SEED = 0


def draw_seed(seed: int | None) -> int:
    return DRAW_SEED if seed is None else seed


def param_space(search: Search, seed: int | None = None) -> dict[str, Any]:
    """Ray's param space: the fixed values, the searched parameters as Ray's domains, the sweep cases as a grid."""
    from ray import tune

    def domain(p: Param) -> Any:
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
    space.update({name: domain(p) for name, p in search.params.items()})
    if search.sweeps:
        space[CASE_KEY] = tune.grid_search(search.cases())
    return space


def search_algorithm(search: Search, seed: int | None, first_rung: int | None = None) -> Any:
    """Optuna for `search: optuna`; for random search a seeded variant generator.

    Seeded always (`draw_seed`: --seed, else 0): Ray's default generator and Optuna draw unseeded, so two
    runs of the same command would try different settings.
    `first_rung`: the epoch whose results Optuna learns from (see OrderedOptunaSearch); None: the last.
    """
    if search.algorithm == "random":
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=draw_seed(seed))
    if search.algorithm != "optuna":
        return None  # Ray's default variant generator handles the grid
    from tune_lab.schedulers import OrderedOptunaSearch  # suggestions that do not depend on timing

    return OrderedOptunaSearch(seed=draw_seed(seed), first_rung=first_rung or search.max_epochs())


def scheduler(search: Search, name: str | None = None, *, slots: int | None = None, state_file: str | None = None,
              trials: int | None = None) -> Any:
    """Ray's FIFO, or tune-lab's stopping or promotion ASHA (`slots`, `trials`, `state_file`: see
    tune_lab.schedulers.RungScheduler)."""
    from ray.tune.schedulers import FIFOScheduler

    kind = name or search.scheduler
    if kind == "fifo":
        return FIFOScheduler()
    from tune_lab.schedulers import PromotionASHA, StoppingASHA

    grace, factor, max_t = search.rung_args()
    made = PromotionASHA if kind == "promotion" else StoppingASHA
    return made(max_t=max_t, grace_period=grace, reduction_factor=factor,
                finalists=(search.scheduler_args or {}).get("finalists", FINALISTS), slots=slots,
                state_file=state_file, trials=trials if kind == "promotion" else None)


@dataclass
class Plan:
    """One search as Ray Tune will run it; `make` fills it, the methods build Ray's objects from it."""

    search: Search
    opts: SearchOptions
    resources: dict[str, float]  # each trial's {"cpu": n, "gpu": share}
    slots: int  # trials that run at once
    trials: int  # trials the search starts (Optuna's and random draws: num_samples)
    scheduler: str  # fifo, asha or promotion: --scheduler over the file's
    scheduler_args: dict[str, Any]
    rungs: list[int]  # the epochs where the scheduler judges (run_trial checkpoints there)
    caps: list[int]  # promotion: the most each rung promotes by rank
    configs: list[dict[str, Any]]  # every whole setting the grid, choices and sweeps give (Search.trial_configs)
    placement: Any = None  # the PlacementCallback of the Tuner made last (`callbacks`)

    def header(self, experiment: str, data: LabData, folder: str) -> Header:
        """The search-level facts of summary.json, also stored on the MLflow parent run; `split`, `overrides`
        and `seed` say what was run beyond the search file (reports.facts shows them)."""
        search = self.search
        return {
            "experiment": experiment, "lab": search.lab, "search": search.name, "search_file": str(search.path),
            "description": search.description, "dataset": data.name, "metric": search.metric, "mode": search.mode,
            "metrics": list(search.spec.metrics),
            "varied": search.varied_by_cases() + list(search.params),
            "sweeps": search.sweeps, "variants": search.variants,
            "params": {name: {p.distribution: p.args} for name, p in search.params.items()},
            "fixed": search.fixed, "algorithm": search.algorithm, "scheduler": self.scheduler,
            "scheduler_args": self.scheduler_args, "rungs": self.rungs, "rung_caps": self.caps, "storage": folder,
            "repeats": search.repeats,
            "subset": self.opts.subset,  # training samples kept (--subset): a lab's published figure needs them all
            "lab_source": search.spec.source,  # a lab of one's own: where `report` / `resume` import it from again
            "split": self.split_line(data), "overrides": search.overrides, "seed": self.opts.seed,
        }

    def split_line(self, data: LabData) -> str:
        """The samples per split that the trials use, for the opening line: one entry per distinct
        data filter among the search's settings (seq2seq's max_length filters, the others do not)."""
        return "; ".join(dict.fromkeys(data.trial_split(config) for config in self.configs))

    def callbacks(self, trial_runs: Any, header: Header) -> list[Any]:
        """Tune's callbacks of this driver: each trial's MLflow run (`trial_runs`), where each attempt ran
        (`self.placement`, read for summary.json), one TensorBoard run per trial, and the driver's own copy of
        Ray's state (a local folder only: an object store writes whole objects, only local files can be cut off)."""
        from tune_lab.driver_state import DriverStateKeeper
        from tune_lab.placement import PlacementCallback
        from tune_lab.tensorboard import EventFiles

        folder = header["storage"]
        self.placement = PlacementCallback()
        callbacks = [trial_runs, self.placement, EventFiles(folder, header)]
        return callbacks + ([] if is_remote(folder) else [DriverStateKeeper(folder)])

    def save(self, folder: str, tracking: dict[str, Any]) -> None:
        """search.json: the search and options as run, and its MLflow ids, which `tune-lab resume` reads back."""
        from tune_lab.results import write_json

        write_json({"search": self.search.to_dict(), "options": dataclasses.asdict(self.opts), "tracking": tracking,
                    "lab_source": self.search.spec.source}, folder, STATE_FILE)  # where `resume` imports a lab of one's own

    def param_space(self) -> dict[str, Any]:
        """The lab's defaults under the search's values: every trial's config is whole."""
        from labspec.config import defaults

        return {**defaults(self.search.spec.config), **param_space(self.search, self.opts.seed)}

    def trainable(self, data: LabData) -> Any:
        """run_trial with the search-level settings every trial shares (the metric, the rungs, the seeds per
        configuration, --deterministic): one carrier, beside the trial's own config; on the resources each is given."""
        from ray import tune

        from trainables.loop import run_trial

        search = self.search
        return tune.with_resources(
            tune.with_parameters(run_trial, lab=search.spec, data=data, metric=search.metric, mode=search.mode,
                                 pause_epochs=tuple(self.rungs), repeats=search.repeats,
                                 deterministic=self.opts.deterministic),
            self.resources,
        )

    def searcher_and_limit(self) -> tuple[Any, int | None]:
        """The search algorithm, and Tune's max_concurrent_trials (None where the searcher itself limits)."""
        search, opts = self.search, self.opts
        limit = opts.max_concurrent or (self.slots if search.algorithm == "optuna" else None)
        searcher = search_algorithm(search, opts.seed, first_rung=self.rungs[0] if self.rungs else None)
        if not self.rungs:
            return searcher, limit
        # a trial waiting at a rung must not hold a place under the concurrency limit
        from tune_lab.schedulers import PauseAwareLimiter, PauseAwareVariantGenerator

        if search.algorithm == "optuna":
            return PauseAwareLimiter(searcher, limit), None
        return PauseAwareVariantGenerator(max_concurrent=limit or 0, random_state=draw_seed(opts.seed)), None

    def make_scheduler(self, state_file: str | None = None) -> Any:
        slots = min(self.slots, self.opts.max_concurrent or self.slots) if self.rungs else self.slots
        return scheduler(self.search, self.scheduler, slots=slots, state_file=state_file, trials=self.trials)

    def tuner(self, data: LabData, trial_runs: Any, header: Header, root: str, progress: Any = None,
              resume: bool = False) -> Any:
        """The search's `Tuner`: a new one, or with `resume` the one Ray restores from the experiment folder (its
        param space, scheduler, searcher and trial states) with this driver's callbacks. `trial_runs`: the MLflow
        callback; `progress`: a ProgressReporter in place of the trial table."""
        from ray import tune

        from tune_lab.ray_internals import quieted, set_callbacks
        from tune_lab.results import read_json

        search, folder = self.search, header["storage"]
        trainable, callbacks = self.trainable(data), self.callbacks(trial_runs, header)
        if resume:
            # Ray's reading of the trials' results warns, a line each, of every trial that has none yet:
            # those still pending at the stop, which start now (issue 18's kill -9: 14 such lines).
            with quieted("ray.tune.analysis.experiment_analysis"):
                # Trials a dead node took down are errored in Ray's state: they run again; a search without one
                # keeps its failed trials failed.
                lost_before = bool((read_json(Path(folder) / "summary.json") or {}).get("node_lost"))
                tuner = tune.Tuner.restore(folder, trainable=trainable, resume_unfinished=True,
                                           resume_errored=lost_before)
            set_callbacks(tuner, callbacks, progress)
            return tuner
        # Where the scheduler keeps its decisions, so that `tune-lab resume` keeps them (a local folder only).
        state_file = f"{folder}/{SCHEDULER_STATE}" if not is_remote(root) else None
        if state_file:  # a new search in the folder of an old one must not inherit its rung decisions
            Path(state_file).unlink(missing_ok=True)
        (searcher, limit), scheduler = self.searcher_and_limit(), self.make_scheduler(state_file)
        reporter = progress or tune.CLIReporter(
            parameter_columns=list(search.params) + [f"case/{k}" for k in search.varied_by_cases()],
            # train/val metrics, and the searched one whatever its name (a GAN's fid or cond_acc)
            metric_columns={"training_iteration": "epoch",
                            **{m: m for m in search.spec.metrics if m.startswith(("train", "val")) or m == search.metric}},
            sort_by_metric=True, max_report_frequency=15,
        )
        return tune.Tuner(
            trainable,
            param_space=self.param_space(),
            tune_config=tune.TuneConfig(
                metric=search.metric, mode=search.mode, search_alg=searcher, scheduler=scheduler,
                num_samples=self.opts.num_samples or search.num_samples, max_concurrent_trials=limit, reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=header["experiment"], storage_path=root, callbacks=callbacks, progress_reporter=reporter,
                verbose=1, checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1, checkpoint_score_attribute=search.metric, checkpoint_score_order=search.mode,
                ),
                failure_config=tune.FailureConfig(max_failures=self.opts.max_failures),
            ),
        )

    def describe(self) -> str:
        """--dry-run: the Tuner this search makes, as Ray Tune's examples write the call."""
        search, opts = self.search, self.opts
        searcher, limit = self.searcher_and_limit()
        space = "\n".join(f"        {key!r}: {_shown(value, search.params.get(key))},"
                          for key, value in self.param_space().items())
        rung_line = (f"  # rungs at epochs {', '.join(map(str, self.rungs))}"
                     + (f"; at most {', '.join(map(str, self.caps))} promoted by rank" if self.caps else "")
                     if self.rungs else "  # no rungs: every trial trains to its last epoch")
        resources = ", ".join(f"{k!r}: {v:g}" for k, v in self.resources.items())
        return "\n".join([
            f"# tune-lab {search.lab} --search {search.name}: {self.trials} trial(s), {self.slots} at once; "
            f"nothing started (--dry-run)",
            "tune.Tuner(",
            f"    tune.with_resources(tune.with_parameters(run_trial, lab={search.lab!r}, metric={search.metric!r}, "
            f"mode={search.mode!r}, pause_epochs={tuple(self.rungs)!r}"
            + (f", repeats={search.repeats}" if search.repeats > 1 else "")
            + (", deterministic=True" if opts.deterministic else "") + f"), {{{resources}}}),",
            "    param_space={",
            space,
            "    },",
            "    tune_config=tune.TuneConfig(",
            f"        metric={search.metric!r}, mode={search.mode!r},",
            f"        search_alg={_named(searcher)},",
            f"        scheduler={type(self.make_scheduler()).__name__}({_args(self.scheduler_args)}),{rung_line}",
            f"        num_samples={opts.num_samples or search.num_samples}, max_concurrent_trials={limit}, "
            f"reuse_actors=True,",
            "    ),",
            f"    run_config=tune.RunConfig(name={opts.experiment or f'{search.lab}-{search.name}-TIME'!r}, "
            f"storage_path={str(paths.results_root(opts.storage))!r}),",
            ")",
        ])


def _shown(value: Any, param: Param | None) -> str:
    """A param-space value as one writes it: a searched parameter as the tune.* call `param_space` makes of it."""
    if isinstance(value, dict) and set(value) == {"grid_search"}:
        return f"tune.grid_search({value['grid_search']!r})"
    if param is None:
        return repr(value)
    listed = param.distribution in ("grid", "choice")
    args = [param.args] if listed else [*param.args[:1], param.args[1] + (param.distribution == "randint"), *param.args[2:]]
    return f"tune.{'grid_search' if param.distribution == 'grid' else param.distribution}({', '.join(map(repr, args))})"


def _named(searcher: Any) -> str:
    return "None (Ray's grid: every combination)" if searcher is None else type(searcher).__name__ + "(...)"


def _args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def make(search: Search, opts: SearchOptions, now: dict[str, float] | None = None) -> Plan:
    """The search's plan on the cluster this driver has joined (`now`: the resources to plan for instead)."""
    name = opts.scheduler or search.scheduler
    trials, at, configs = search.trial_count(opts.num_samples), search.rungs(name), search.trial_configs()
    resources, slots = capacity.trial_resources(opts, trials, search.spec.gpu_fraction, now)
    args = (search.scheduler_args or ASHA_DEFAULTS) if name in ("asha", "promotion") else {}
    from tune_lab.schedulers import promotion_caps  # (Ray's Tune, imported once Ray is wanted)

    capped = promotion_caps(at, trials, args["reduction_factor"]) if name == "promotion" else {}
    return Plan(search=search, opts=opts, resources=resources, slots=slots, trials=trials, scheduler=name,
                scheduler_args=args, rungs=at, caps=[capped[r] for r in at if r in capped], configs=configs)


def load_state(folder: Path) -> tuple[Search, SearchOptions, dict[str, Any]]:
    """What `Plan.save` wrote: the search, its options and its MLflow ids."""
    state = json.loads((folder / STATE_FILE).read_text())
    return Search.from_dict(state["search"]), SearchOptions(**state["options"]), state["tracking"]


def this_machine() -> dict[str, float]:
    """What a local Ray would have here, without starting one (--dry-run): its CPUs, and the GPUs torch sees."""
    gpus = 0
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) != "":
        import torch

        gpus = torch.cuda.device_count()
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}
