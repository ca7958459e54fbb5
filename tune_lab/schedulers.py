"""Early stopping that decides well with two slots: promotion-based ASHA (`scheduler: {promotion: ...}`).

Why not Ray's `ASHAScheduler` alone: it is the *stopping* variant of ASHA. A trial reaching a
rung is compared with the trials that reached it before; the first trials of a search, with
nobody there yet, pass every rung. With two slots that is most of a small search (issue 21:
the first seven of 16 trials all ran 20 epochs, lr 2.8e-05 at 82.7% among them).

`PromotionASHA` is ASHA as the paper defines it (Li et al., MLSys 2020; Syne Tune's
`type="promotion"`): a trial that reaches a rung *pauses* there, its checkpoint kept, and
continues only when it is among the top 1/rf of the trials that reached that rung (floor of
their count over rf, the ones not yet promoted). A freed slot goes first to a promotable paused
trial (highest rung first), else to a new trial. When no new trial will come and a slot would
idle, a rung that has promoted fewer trials than there are slots promotes its best waiting trial,
a "finisher" (the lowest such rung first: the longest run starts first, so the last ends
soonest), and a trial reaching such a rung then goes on without a pause; a finisher is chosen
only once no trial still on its way to that rung could displace it (the end of a search decides
as synchronous successive halving would: see `_coming`). The search thus trains
at least as many trials to the end as it has slots, and starts those long runs while the last
new trials still run. One finisher would leave the other slots idle for its whole last leg
(with two slots, the mlp lr search's epochs 10-20: a third of its wall time), and near the
optimum the final results of the best few trials differ by about one seed's noise, so a second
finalist in that otherwise idle slot is the cheapest chance of a better best (docs/benchmarks.md,
issue 21). While a finisher runs, a slot that would idle takes the best waiting trial of the
highest rung if it can finish no later than the finisher (a runner-up that costs no wall time).
What still waits when nothing runs is stopped there ("stopped early").

A rung promotes by the top-1/rf rule only up to what synchronous successive halving would promote
there over the whole search (`promotion_caps`: with 16 trials and rf 3, 6 at the first rung, 2 at
the second, 1 at the third). ASHA's rule compares a trial with the trials at the rung *so far*,
so when later trials keep ranking above earlier ones (TPE's suggestions improving on its random
start) every one of them goes on, and the cost of a search depends on the order its trials
came in: 60 to 110 trial-epochs for the same mlp lr search over 25 seeds; capped, 60 to 62, at
the same best accuracy (docs/benchmarks.md, issue 21). A trial the cap holds back waits at its
rung like any other and can still be a finisher.

Exactness of a pause: a paused function trainable is restored from its latest checkpoint. The
scheduler pauses only on a result that carries a checkpoint (`should_checkpoint`), and
`run_trial` saves one at every rung epoch (`pause_epochs`), with the random streams of the
trial (shuffling generator, the global torch / NumPy / Python streams of each seed). A trial
paused and promoted therefore continues from the epoch after the rung exactly as if it had not
stopped (tests/test_promotion.py). A rung result without a checkpoint (someone else's trainable)
is decided at once instead, as stopping ASHA would: kept if in the top 1/rf so far, else stopped.

Beyond Ray's `TrialScheduler` interface it uses the controller's `search_alg` and `stop_trial`,
sets a resumed trial back to PAUSED, and frees a paused trial's place in the searcher's
concurrency count (`Searcher.on_pause / on_unpause`, the hooks Ray's BOHB uses, which Ray's
`ConcurrencyLimiter` forwards but ignores): all through tune_lab/ray_internals.py, which says why.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from trainables.files import write_bytes_whole, written_whole
from tune_lab import ray_internals
from tune_lab.paths import SCHEDULER_STATE
from tune_lab.tracking import flat_params

logger = logging.getLogger(__name__)

TIME_ATTR = "training_iteration"


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


def promotion_caps(rungs: list[int], trials: int | None, reduction_factor: float) -> dict[int, int]:
    """Rung -> the most trials it promotes by ASHA's rule: ceil(n / rf), n the trials synchronous successive
    halving would bring to that rung out of `trials` (the whole search). No caps when the count is unknown."""
    caps: dict[int, int] = {}
    reaching = trials or 0  # trials at the rung below: the whole search at the first
    for rung in rungs if trials else []:
        reaching = caps[rung] = math.ceil(reaching / reduction_factor)
    return caps


def planned_epochs(config: dict[str, Any], default: int) -> int:
    """A trial's own last epoch: its sweep case's epochs, else its config's, else `default`."""
    case = config.get("case") if isinstance(config.get("case"), dict) else {}
    value = case.get("epochs", config.get("epochs", default))
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class PromotionASHA(FIFOScheduler):
    """Promotion-based asynchronous successive halving (see the module docstring).

    `slots`: how many trials can run at once (promotions are handed out when one is free);
    None means "whenever asked". `trials`: how many trials the search starts (the rungs' caps; None:
    uncapped, ASHA's rule alone). `state_file`: where the rung table and the event log are kept
    so that `tune-lab resume` continues the same decisions; None keeps them in memory only.
    """

    def __init__(self, *, max_t: int, grace_period: int = 1, reduction_factor: float = 3,
                 metric: str | None = None, mode: str | None = None, slots: int | None = None,
                 state_file: str | None = None, trials: int | None = None) -> None:
        super().__init__()
        if reduction_factor <= 1 or grace_period < 1 or max_t < 1:
            raise ValueError("PromotionASHA needs grace_period >= 1, reduction_factor > 1, max_t >= 1")
        self.max_t, self.rf, self.slots = int(max_t), reduction_factor, slots
        self.rungs = rung_epochs(grace_period, reduction_factor, max_t)
        self._metric, self._mode = metric, mode
        self.caps = promotion_caps(self.rungs, trials, reduction_factor)
        self.state_file = state_file
        self.records: dict[int, dict[str, float]] = {r: {} for r in self.rungs}  # rung -> trial -> score (higher is better)
        self.promoted: dict[int, list[str]] = {r: [] for r in self.rungs}
        self.waiting: dict[str, int] = {}  # trial paused at a rung -> that rung
        self.events: list[dict[str, Any]] = []  # {"trial_id", "epoch", "event": paused|promoted|stopped}
        self.finishers: list[str] = []  # trials promoted at the end because their rung had promoted fewer than slots
        self._loaded = False

    # --- search properties -------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric, self._mode = self._metric or metric, self._mode or mode
        return True

    def _score(self, value: float) -> float:
        return value if self._mode == "max" else -value

    # --- the rung table ----------------------------------------------------------------------
    def _ranked(self, rung: int) -> list[str]:
        """The trials that reached `rung`, best first (a tie: who came first), kept until the rung changes.

        Kept, because choose_trial_to_run asks for every waiting trial: sorting there each time, by a
        list position looked up per trial, made a 1,000-trial search's driver spend its time here.
        """
        ranks = self._rank_cache()
        if rung not in ranks:
            recorded = self.records[rung]
            ranked = [t for _, t in sorted(enumerate(recorded), key=lambda it: (-recorded[it[1]], it[0]))]
            ranks[rung] = (ranked, {t: place for place, t in enumerate(ranked)})
        return ranks[rung][0]

    def _rank_cache(self) -> dict[int, tuple[list[str], dict[str, int]]]:
        """Rung -> its trials best first, and their places. Made here: a resumed search unpickles a scheduler
        pickled (tuner.pkl) by the tune-lab that started it, without running __init__."""
        return vars(self).setdefault("_ranks", {})

    def _promotable(self, trial_id: str, rung: int, at_least: int = 0, coming: int = 0) -> bool:
        """In the top 1/rf of the trials that reached `rung`, not promoted yet, while the rung is under its cap;
        or, with `at_least` (a finisher at the end of a search), in its top `at_least` while the rung has promoted
        fewer, and so even if the `coming` trials still on their way to the rung all arrive ahead of it."""
        if trial_id in self.promoted[rung]:
            return False
        self._ranked(rung)
        place = self._rank_cache()[rung][1].get(trial_id)
        if place is None:
            return False
        if place < math.floor(len(self.records[rung]) / self.rf) and self._under_cap(rung):
            return True
        return len(self.promoted[rung]) < at_least and place + coming < at_least

    def _caps(self) -> dict[int, int]:
        """Rung -> its cap. A search pickled by a tune-lab without caps (resumed by this one) has none: uncapped, as it began."""
        return vars(self).get("caps", {})

    def _under_cap(self, rung: int) -> bool:
        cap = self._caps().get(rung)
        return cap is None or len(self.promoted[rung]) < cap

    def _coming(self, trials: list[Trial], rung: int, trial_id: str | None = None) -> int:
        """Trials running (or about to) below `rung`, other than `trial_id`: at the end of a search, the ones
        that may still reach it. A finisher chosen before they arrive could be one a later arrival beats: ASHA's
        asynchrony buys nothing once no new trial will start, so the end of a search decides as synchronous
        successive halving would, as soon as no arrival can change the decision."""
        return sum(1 for t in trials if t.status in (Trial.RUNNING, Trial.PENDING) and t.trial_id != trial_id
                   and t.trial_id not in self.waiting and int((t.last_result or {}).get(TIME_ATTR, 0)) < rung)

    def _event(self, trial_id: str, epoch: int, event: str) -> None:
        self.events.append({"trial_id": trial_id, "epoch": epoch, "event": event})
        self._save()

    def _save(self) -> None:
        if not self.state_file:
            return
        state = {"rungs": self.rungs, "records": {str(r): v for r, v in self.records.items()},
                 "promoted": {str(r): v for r, v in self.promoted.items()},
                 "waiting": self.waiting, "events": self.events, "finishers": self.finishers}
        write_bytes_whole(self.state_file, json.dumps(state, indent=1).encode())

    def _load(self) -> None:
        """The rung table of an interrupted search (once, on the first trial added after a resume)."""
        self._loaded = True
        if not self.state_file or not Path(self.state_file).is_file():
            return
        state = json.loads(Path(self.state_file).read_text())
        for r in self.rungs:
            self.records[r] = dict(state["records"].get(str(r), {}))
            self._rank_cache().pop(r, None)
            self.promoted[r] = list(state["promoted"].get(str(r), []))
        self.waiting = {t: int(r) for t, r in state["waiting"].items()}
        self.events = list(state["events"])
        self.finishers = list(state.get("finishers", []))

    # --- Ray's TrialScheduler interface ------------------------------------------------------
    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if not self._loaded:
            self._load()
        if trial.status != Trial.PENDING:
            return
        # A resumed search (see the module docstring): Ray re-adds every unfinished trial as PENDING.
        if trial.trial_id in self.waiting and trial.checkpoint is not None:
            ray_internals.set_trial_status(trial, Trial.PAUSED)  # it waits at its rung again
        elif _last_event(self.events, trial.trial_id) == "stopped":
            ray_internals.set_trial_status(trial, Trial.TERMINATED)  # stopped at its rung; Ray's state file still said PAUSED
        else:
            return
        # The searcher's saved state may predate the pause: it must not count the trial as running.
        self._searcher_hook(tune_controller, "on_pause", trial.trial_id)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if TIME_ATTR not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        epoch, trial_id = int(result[TIME_ATTR]), trial.trial_id
        if epoch not in self.records or epoch >= planned_epochs(trial.config, self.max_t):
            return TrialScheduler.CONTINUE
        if trial_id in self.promoted[epoch]:  # a rung reported again (a retried trial): decided already
            return TrialScheduler.CONTINUE
        self.records[epoch][trial_id] = self._score(float(result[self._metric]))
        self._rank_cache().pop(epoch, None)
        if self._promotable(trial_id, epoch):
            self.promoted[epoch].append(trial_id)
            self._save()
            return TrialScheduler.CONTINUE
        if self._finishing(tune_controller) and self._promotable(
                trial_id, epoch, at_least=self.slots or 1, coming=self._coming(tune_controller.get_trials(), epoch, trial_id)):
            # A finisher's place at this rung is open and it is among the best there: the end-of-search rule would
            # promote it from its pause at once, so it goes on without one (no checkpoint restore in its long run).
            self.promoted[epoch].append(trial_id)
            self.finishers.append(trial_id)
            self._save()
            return TrialScheduler.CONTINUE
        if not result.get("should_checkpoint"):
            # No checkpoint at this epoch: a pause would lose epochs. Decide now, as stopping ASHA would.
            keep = max(1, math.ceil(len(self.records[epoch]) / self.rf))
            if trial_id in self._ranked(epoch)[:keep] and self._under_cap(epoch):
                self.promoted[epoch].append(trial_id)
                self._save()
                return TrialScheduler.CONTINUE
            self._event(trial_id, epoch, "stopped")
            return TrialScheduler.STOP
        self.waiting[trial_id] = epoch
        self._event(trial_id, epoch, "paused")
        self._searcher_hook(tune_controller, "on_pause", trial_id)
        return TrialScheduler.PAUSE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.waiting.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.waiting.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        rung = self.waiting.pop(trial.trial_id, None)
        if rung is not None:
            self._event(trial.trial_id, rung, "stopped")

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trials = tune_controller.get_trials()
        paused = {t.trial_id: t for t in trials if t.status == Trial.PAUSED and t.trial_id in self.waiting}
        pending = [t for t in trials if t.status == Trial.PENDING]
        # A trial just told to pause is RUNNING until Ray has saved its checkpoint, but its slot is free: its
        # successor chosen now is staged before Ray stops the pausing trial, and Ray hands it that trial's process.
        # Once the searcher has no more trials, Ray keeps a stopped trial's process only for a trial already
        # staged; choosing after the pause started a new process for every finisher (~5-8 s of a slot each).
        running = [t for t in trials if t.status == Trial.RUNNING and t.trial_id not in self.waiting]
        free = self.slots is None or len(running) < self.slots
        if free:
            for rung in sorted(self.rungs, reverse=True):
                for trial_id in self._ranked(rung):
                    if trial_id in paused and self.waiting.get(trial_id) == rung and self._promotable(trial_id, rung):
                        return self._promote(tune_controller, paused[trial_id], rung)
        if pending:
            return pending[0]
        if not paused or not self._finishing(tune_controller):
            return None
        # No new trial will come and a slot would idle: a rung that has promoted fewer than `slots` promotes its
        # best (a "finisher": the search trains as many trials to the end as it has slots), the lowest such
        # rung first: the finisher with the most epochs to go starts first, so the last to end ends soonest ...
        if free:
            finalists = self.slots or 1
            for rung in self.rungs:
                coming = self._coming(trials, rung)
                for trial_id in self._ranked(rung):
                    if trial_id in paused and self.waiting.get(trial_id) == rung and self._promotable(
                            trial_id, rung, at_least=finalists, coming=coming):
                        self.finishers.append(trial_id)
                        return self._promote(tune_controller, paused[trial_id], rung)
            # ... and while a finisher still runs, the slot it would leave idle takes the best waiting
            # trial of the highest rung if that one can reach the last epoch no later than the
            # finisher: a second candidate at no cost in wall time. (Without that bound a runner-up
            # from a lower rung outlasts the finisher: measured 60 trial-epochs and 89 s instead of
            # 43 and ~67 s on the mlp lr search, docs/benchmarks.md.)
            left = max((self.max_t - int((t.last_result or {}).get(TIME_ATTR, 0))
                        for t in running if t.trial_id in self.finishers), default=0)
            for rung in sorted(self.rungs, reverse=True):
                for trial_id in self._ranked(rung):
                    if trial_id in paused and self.waiting.get(trial_id) == rung and self.max_t - rung <= left:
                        return self._promote(tune_controller, paused[trial_id], rung)
        if not running:
            for trial in paused.values():  # nothing runs and nothing can be promoted: the search is over
                ray_internals.stop_trial(tune_controller, trial)
        return None

    @staticmethod
    def _finishing(tune_controller: Any) -> bool:
        """No new trial will come: what is left of the search is in its trials already."""
        search_alg = ray_internals.search_algorithm(tune_controller)
        return search_alg is not None and search_alg.is_finished()

    def _promote(self, tune_controller: Any, trial: Trial, rung: int) -> Trial:
        self.promoted[rung].append(trial.trial_id)
        del self.waiting[trial.trial_id]
        self._event(trial.trial_id, rung, "promoted")
        self._searcher_hook(tune_controller, "on_unpause", trial.trial_id)
        return trial

    @staticmethod
    def _searcher_hook(tune_controller: Any, name: str, trial_id: str) -> None:
        search_alg = ray_internals.search_algorithm(tune_controller)
        for target in (search_alg, getattr(search_alg, "searcher", None)):
            if getattr(target, "pause_aware", False):
                getattr(target, name)(trial_id)

    def debug_string(self) -> str:
        caps = self._caps()
        counts = ", ".join(f"epoch {r}: {len(self.records[r])} reached, {len(self.promoted[r])} promoted"
                           + (f" (at most {caps[r]} by rank)" if r in caps else "") for r in self.rungs)
        return f"Using promotion ASHA (rf {self.rf:g}): {counts}; {len(self.waiting)} waiting"


class ResumableASHA(ASHAScheduler):
    """Ray's (stopping) ASHA whose decisions survive a killed driver: `tune-lab resume` keeps them.

    `Tuner.restore` brings the scheduler back as it was pickled when the search started
    (tuner.pkl), with empty rungs: Ray never calls a scheduler's `save` / `restore` on resume.
    Ray's ASHA then judges a resumed trial at the highest rung at or below its epoch that has no
    record of it, against whatever has reached that rung since the resume. A trial that had passed
    rung 6 was judged there again at epoch 11, against later epochs of others, and stopped (issue
    19); a trial reaching rung 2 after the resume was compared with nobody and passed.

    Here the scheduler's state (public `save`, a pickle of its rungs) is written to `state_file`
    whenever a rung record changes or a trial is stopped, and read back (public `restore`) when
    the first trial is added after a resume: every past decision stands, and a trial that passed
    a rung is never judged there again. Stops are kept besides (`stopped`, trial -> epoch): Ray's
    experiment state is saved every few seconds, so the driver can be killed after ASHA stopped a
    trial and before Ray wrote it down; that trial, resumed, is stopped again at the same epoch.
    The state file is always at least as new as Ray's experiment state (written synchronously
    at each decision, atomically).
    """

    def __init__(self, *, state_file: str | None = None, **kwargs: Any) -> None:
        if kwargs.get("brackets", 1) != 1:  # a restored trial must land in the bracket it was in
            raise ValueError("ResumableASHA has one bracket")
        super().__init__(**kwargs)
        self.state_file = state_file
        self.stopped: dict[str, int] = {}  # trial -> the epoch ASHA stopped it at
        self.time_attr, self.max_t = kwargs.get("time_attr", TIME_ATTR), kwargs.get("max_t", 100)
        # The epochs at which Ray's bracket records a trial: grace_period x rf^k, as Ray places them.
        grace, rf = kwargs.get("grace_period", 1), kwargs.get("reduction_factor", 4)
        count = int(math.log(self.max_t / grace) / math.log(rf) + 1)
        self.milestones = sorted({math.ceil(grace * rf**k) for k in range(count)})
        self._loaded = False

    def _save(self) -> None:
        if not self.state_file:
            return
        with written_whole(self.state_file) as partial:
            self.save(str(partial))

    def _load(self) -> None:
        self._loaded = True
        if not self.state_file or not Path(self.state_file).is_file():
            return
        state_file = self.state_file
        self.restore(state_file)  # the saved __dict__: rungs, trial -> bracket, stopped ...
        self.state_file, self._loaded = state_file, True  # ... except where this driver keeps it

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if not self._loaded:
            self._load()
        super().on_trial_add(tune_controller, trial)  # one bracket (tune-lab's): a restored trial gets its own again

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        epoch = result.get(self.time_attr)
        if epoch is not None and trial.trial_id in self.stopped and epoch >= self.stopped[trial.trial_id]:
            return TrialScheduler.STOP  # stopped here before the kill; Ray's state had not said so yet
        action = super().on_trial_result(tune_controller, trial, result)
        if epoch is None or self.metric not in result:
            return action
        if action == TrialScheduler.STOP and epoch < self.max_t:
            self.stopped[trial.trial_id] = int(epoch)
            self._save()
        elif int(epoch) in self.milestones:  # the result a rung records (trials report every epoch)
            self._save()
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._save()


def _last_event(events: list[dict[str, Any]], trial_id: str) -> str | None:
    return next((e["event"] for e in reversed(events) if e["trial_id"] == trial_id), None)


def read_events(folder: str) -> list[dict[str, Any]]:
    """The paused / promoted / stopped events of a promotion-ASHA search (none for other searches)."""
    path = Path(folder) / SCHEDULER_STATE
    if "://" in folder or not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("events", []))


def stopped_while_waiting(folder: str) -> set[str]:
    """Trials stopped at a rung. Ray stops them while PAUSED, and its experiment state (which only
    records trials that have an actor when stopped) keeps calling them PAUSED."""
    events = read_events(folder)
    return {e["trial_id"] for e in events if _last_event(events, e["trial_id"]) == "stopped"}


def add_events(summary: dict[str, Any], folder: str, client: Any = None) -> None:
    """Each trial row's `schedule`: [{"epoch": 1, "event": "paused"}, {"epoch": 1, "event": "promoted"}, ...],
    also set as a tag of the trial's MLflow run (with `client`), so a report rebuilt from MLflow has it."""
    from reports.source import SCHEDULE_TAG

    events = read_events(folder)
    if not events:
        return
    for row in summary["trials"]:
        row["schedule"] = [{"epoch": e["epoch"], "event": e["event"]} for e in events if e["trial_id"] == row["trial_id"]]
        if client is not None and row.get("mlflow_run_id"):
            client.set_tag(row["mlflow_run_id"], SCHEDULE_TAG, json.dumps(row["schedule"]))


class PauseAwareVariantGenerator(BasicVariantGenerator):
    """Ray's grid / random generator, whose `max_concurrent` (--max-concurrent) does not count paused trials:
    without that `--max-concurrent 1` with promotion ASHA stalls as soon as the first trial waits at a rung."""

    pause_aware = True

    def on_pause(self, trial_id: str) -> None:
        ray_internals.hold_place(self, trial_id, False)

    def on_unpause(self, trial_id: str) -> None:
        ray_internals.hold_place(self, trial_id, True)


class PauseAwareLimiter(ConcurrencyLimiter):
    """Ray's ConcurrencyLimiter, except that a trial paused at a rung does not hold a place.

    Ray's limiter counts every trial it let through until it completes: with two slots and two
    trials waiting at a rung it would never suggest a third, and the search would stall.
    """

    pause_aware = True

    def __init__(self, searcher: Any, max_concurrent: int) -> None:
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.paused: set[str] = set()

    def on_pause(self, trial_id: str) -> None:
        if ray_internals.hold_place(self, trial_id, False):
            self.paused.add(trial_id)
        if getattr(self.searcher, "pause_aware", False):
            self.searcher.on_pause(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        if trial_id in self.paused:
            self.paused.discard(trial_id)
            ray_internals.hold_place(self, trial_id, True)
        if getattr(self.searcher, "pause_aware", False):
            self.searcher.on_unpause(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.paused:  # stopped while waiting at a rung
            self.paused.discard(trial_id)
            return self.searcher.on_trial_complete(trial_id, result=result, error=error)
        return super().on_trial_complete(trial_id, result=result, error=error)


class RungOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, telling Optuna what a stopped or paused trial is: pruned, at its last epoch.

    What Ray's OptunaSearch does with a trial that ASHA stopped at epoch 3: the result that
    stopped it never reaches `on_trial_result` (Ray skips the searcher on a STOP), and
    `on_trial_complete` then tells Optuna COMPLETE with the epoch-3 value, as if that were a
    20-epoch result. TPE ranks complete trials by value alone, so an early value competes with
    finished ones as an equal. Here a stopped trial's last value is reported at its epoch and
    the trial told PRUNED: TPE ranks pruned trials below complete ones, by how far they got,
    then by their value there (Optuna's `_split_pruned_trials`), as it does for Optuna's own
    pruners. A trial paused at a rung is told PRUNED when it pauses (TPE learns from it at once,
    instead of seeing a running trial for the rest of the search); if it is promoted and
    finishes, its final value is added as a COMPLETE trial of the same parameters.
    """

    pause_aware = True

    def __init__(self, *args: Any, max_t: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_t = max_t
        self._params: dict[str, dict[str, Any]] = {}
        self._told_on_pause: set[str] = set()

    def suggest(self, trial_id: str) -> dict | None:
        params = super().suggest(trial_id)
        if isinstance(params, dict):
            self._params[trial_id] = params
        return params

    def on_pause(self, trial_id: str) -> None:
        if trial_id not in self._told_on_pause:
            self._told_on_pause.add(trial_id)
            super().on_trial_complete(trial_id, result=None)  # no value: Optuna records PRUNED at the last reported epoch

    def on_unpause(self, trial_id: str) -> None:
        pass

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._told_on_pause:
            return  # Optuna has this trial as pruned; its final value comes with on_trial_complete
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        value = (result or {}).get(self.metric) if not isinstance(self.metric, list) else None
        finished = result is not None and value is not None and not error and int(
            result.get(TIME_ATTR, 0)) >= self._planned(result)
        if trial_id in self._told_on_pause:
            if finished and trial_id in self._params:
                self.add_evaluated_point(flat_params(self._params[trial_id]), value)
            return
        if result is not None and value is not None and not error and not finished:
            super().on_trial_result(trial_id, result)  # the epoch it was stopped at, which Ray did not pass on
            return super().on_trial_complete(trial_id, result=None)  # PRUNED, valued at that epoch
        return super().on_trial_complete(trial_id, result=result, error=error)

    def _planned(self, result: dict) -> int:
        default = self.max_t or int(result.get(TIME_ATTR, 0))
        for key in ("config/case/epochs", "config/epochs"):
            if key in result:
                try:
                    return int(result[key])
                except (TypeError, ValueError):
                    break
        return default
