"""Early stopping whose decisions are the same however the trials' processes happen to be timed.

Both tune-lab schedulers (`scheduler: asha`, `scheduler: promotion`) pause trials at rungs, the epochs
grace_period x rf^k below a trial's last epoch (`spaces.rung_epochs`, the one rule for them), and judge a trial
at a rung only once every trial made before it has reached that rung or never will; it is judged
against those trials only. So each decision is a function of the trials' results, the decisions a
search would take if its trials reported one at a time in the order the searcher made them, whatever
order the processes reported in and however many slots ran them (issue 31: Ray's ASHA stopped the main
job's SGD trial at epoch 2, at epoch 6 or never, depending on which process reported first; ray#9815,
ray#43900). A trial that reaches a rung before an earlier trial has pauses there (its checkpoint kept)
until it can be judged; the slot it frees goes to a waiting trial first ("breadth first": a new trial
reaches the first rung before a kept one goes on, so the weak ones of a small search are stopped first
instead of last).

`StoppingASHA` (`asha`) is ASHA's stopping variant with Ray's rule: a trial goes on when its result is at
least the (1 - 1/rf) quantile of the results of the trials before it at the rung; the first trial passes.

`PromotionASHA` (`promotion`) is ASHA as the paper defines it (Li et al., MLSys 2020; Syne Tune's
`type="promotion"`): a trial at a rung waits there and goes on once it is among the top floor(n/rf) of
the n trials judged there so far, and at most what synchronous successive halving would promote there
over the whole search (`promotion_caps`: with 16 trials and rf 3, 6 at the first rung, 2 at the second,
1 at the third; uncapped, the cost of the mlp lr search depended on the order of its trials, 60 to 110
trial-epochs over 25 seeds: docs/benchmarks.md, issue 21). A rung closes when no trial can still reach
it and the searcher has made its last trial: its best waiting trials then go on until `finalists` have
(default 2: near the optimum the best few differ by about one seed's noise, so a second finalist is the
cheapest chance of a better best), and the rest stop there.

Exactness of a pause: a paused function trainable is restored from its latest checkpoint, and
`run_trial` saves one at every rung epoch (`pause_epochs`) with the trial's random streams, so a trial
paused and resumed continues exactly as if it had not stopped (tests/test_promotion.py). A rung result
without a checkpoint (someone else's trainable) is judged at once against the trials there so far, as
Ray's ASHA would: that decision alone depends on timing.

`tune-lab resume`: the decisions are written to a state file at each one (atomically), read back when
the first trial is added after the resume; a trial Ray's older experiment state did not know is made
again under the same number and judged again, identically.

The searcher's side is `OrderedOptunaSearch` (below). Beyond Ray's `TrialScheduler` interface the
schedulers use the controller's `search_alg` and `stop_trial`, set a resumed trial back to PAUSED, and
free a paused trial's place in the searcher's concurrency count (`Searcher.on_pause / on_unpause`, the
hooks Ray's BOHB uses, which Ray's `ConcurrencyLimiter` forwards but ignores): all through
tune_lab/ray_internals.py, which says why.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ray.tune.experiment import Trial
from ray.tune.result import SHOULD_CHECKPOINT, TRAINING_ITERATION
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from labspec.files import is_remote, write_bytes_whole
from tune_lab import ray_internals
from tune_lab.paths import SCHEDULER_STATE
from tune_lab.spaces import rung_epochs

logger = logging.getLogger(__name__)

TIME_ATTR = TRAINING_ITERATION


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


class RungScheduler(FIFOScheduler):
    """Successive halving whose decisions depend on the trials' results only (see the module docstring).

    `slots`: how many trials can run at once (a freed slot is filled when one is free; None: whenever
    Ray asks). `trials`: how many trials the search starts (promotion's caps; None: uncapped).
    `finalists`: how many trials at least a promotion search trains to the end. `state_file`: where the
    decisions are kept so that `tune-lab resume` continues them; None keeps them in memory only.
    """

    promotes = False  # PromotionASHA: a trial not kept waits at its rung for a later promotion

    def __init__(self, *, max_t: int, grace_period: int = 1, reduction_factor: float = 3,
                 metric: str | None = None, mode: str | None = None, slots: int | None = None,
                 state_file: str | None = None, trials: int | None = None, finalists: int = 2) -> None:
        super().__init__()
        if reduction_factor <= 1 or grace_period < 1 or max_t < 1 or finalists < 1:
            raise ValueError(f"{type(self).__name__} needs grace_period >= 1, reduction_factor > 1, max_t >= 1, "
                             "finalists >= 1")
        self.max_t, self.rf, self.slots, self.finalists = int(max_t), reduction_factor, slots, int(finalists)
        self.rungs = rung_epochs(grace_period, reduction_factor, max_t)
        self._metric, self._mode = metric, mode
        self.caps = promotion_caps(self.rungs, trials, reduction_factor) if self.promotes else {}
        self.state_file = state_file
        self.order: dict[str, int] = {}  # trial -> its number in the search (the order the searcher made them)
        self.planned: dict[str, int] = {}  # trial -> its last epoch
        self.records: dict[int, dict[str, float]] = {r: {} for r in self.rungs}  # rung -> trial -> score (higher is better)
        self.decided: dict[int, list[str]] = {r: [] for r in self.rungs}  # rung -> trials judged there, in trial order
        self.promoted: dict[int, list[str]] = {r: [] for r in self.rungs}  # rung -> trials that go on past it
        self.closed: list[int] = []  # promotion: rungs every trial has passed or left; their finishers chosen
        self.waiting: dict[str, int] = {}  # trial paused at a rung -> that rung
        self.ended: dict[str, int] = {}  # trial -> its last epoch, once it stopped, completed or failed
        self.events: list[dict[str, Any]] = []  # {"trial_id", "epoch", "event": paused|promoted|stopped}
        self.finishers: list[str] = []  # trials promoted when their rung closed (fewer than `finalists` went on)
        self._loaded = False
        self._settled_finishing: bool | None = None  # the searcher's state when choose_trial_to_run last settled
        self._numbered = 0  # trials this scheduler has given a number (one made again after a kill counts again)

    # --- search properties -------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric, self._mode = self._metric or metric, self._mode or mode
        return True

    def _score(self, value: float) -> float:
        return value if self._mode == "max" else -value

    # --- the logical order -------------------------------------------------------------------
    def _number(self, trial: Trial) -> int:
        """The trial's place in the search: the number Ray's generator gave it (kept across a resume, and given
        again to a trial the killed driver had made but not saved), else the order this scheduler first saw it."""
        if trial.trial_id not in self.order:
            number = ray_internals.trial_number(trial)
            if number is None:
                number = max(self.order.values(), default=-1) + 1
            for other, taken in list(self.order.items()):
                if taken == number:  # made again after a kill: what the scheduler kept of the first one goes
                    self._forget(other)
            self.order[trial.trial_id] = number
            self._numbered += 1
            self.planned[trial.trial_id] = planned_epochs(trial.config, self.max_t)
        return self.order[trial.trial_id]

    def _forget(self, trial_id: str) -> None:
        for table in (self.order, self.planned, self.waiting, self.ended, *self.records.values()):
            table.pop(trial_id, None)
        for listed in (*self.decided.values(), *self.promoted.values(), self.finishers):
            while trial_id in listed:
                listed.remove(trial_id)

    def _sequence(self) -> list[str]:
        return sorted(self.order, key=self.order.__getitem__)

    def _settled(self, trial_id: str, rung: int) -> bool:
        """Whether `trial_id`'s part at `rung` is known: it reached the rung, or it never will."""
        return trial_id in self.records[rung] or trial_id in self.ended or self.planned.get(trial_id, 0) <= rung

    def _settle(self, finished: bool) -> None:
        """Take every decision that no result still to come can change: rung by rung, in trial order.

        A trial is judged at a rung once every trial before it has reached that rung or never will, against
        those trials only; so the decisions are the ones a search would take if its trials reported one at a
        time in order, whatever order their processes happened to report in. `finished`: the searcher will
        make no more trials (a promotion rung can then close).
        """
        sequence = self._sequence()
        changed = True
        while changed:
            changed = False
            for rung in self.rungs:
                for trial_id in sequence:
                    if trial_id in self.records[rung] and trial_id not in self.decided[rung]:
                        self._decide(trial_id, rung)
                        changed = True
                    elif not self._settled(trial_id, rung):
                        break
                else:
                    if self.promotes and finished and rung not in self.closed:
                        self._close(rung)
                        changed = True

    def _decide(self, trial_id: str, rung: int) -> None:
        raise NotImplementedError

    def _close(self, rung: int) -> None:
        raise NotImplementedError

    def _go_on(self, trial_id: str, rung: int) -> None:
        self.promoted[rung].append(trial_id)
        if self.waiting.get(trial_id) == rung:  # it paused there: the decision is its schedule's "promoted"
            self._event(trial_id, rung, "promoted")
        self._save()

    def _stop(self, trial_id: str, rung: int) -> None:
        self.ended[trial_id] = rung
        self.waiting.pop(trial_id, None)  # a paused one is stopped by choose_trial_to_run
        self._event(trial_id, rung, "stopped")

    def _ranked(self, rung: int) -> list[str]:
        """The trials judged at `rung`, best first (a tie: the earlier trial)."""
        recorded = self.records[rung]
        return sorted(self.decided[rung], key=lambda t: (-recorded[t], self.order[t]))

    def _event(self, trial_id: str, epoch: int, event: str) -> None:
        self.events.append({"trial_id": trial_id, "epoch": epoch, "event": event})
        self._save()

    # --- what survives the driver ------------------------------------------------------------
    STATE_KEYS = ("order", "planned", "records", "decided", "promoted", "closed", "waiting", "ended", "events",
                  "finishers")

    def _save(self) -> None:
        if not self.state_file:
            return
        state = {key: getattr(self, key) for key in self.STATE_KEYS}
        state["rungs"] = self.rungs
        write_bytes_whole(self.state_file, json.dumps(state, indent=1).encode())

    def _load(self) -> None:
        """The decisions of an interrupted search (once, on the first trial added after a resume). The state
        file is written at every decision, so it is never older than Ray's experiment state."""
        self._loaded = True
        if not self.state_file or not Path(self.state_file).is_file():
            return
        state = json.loads(Path(self.state_file).read_text())
        for key in self.STATE_KEYS:
            value = state[key]
            if key in ("records", "decided", "promoted"):
                value = {r: value.get(str(r), type(getattr(self, key)[r])()) for r in self.rungs}
            setattr(self, key, value)

    # --- Ray's TrialScheduler interface ------------------------------------------------------
    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if not self._loaded:
            self._load()
        self._number(trial)
        if trial.status != Trial.PENDING:
            return
        # A resumed search: Ray re-adds every unfinished trial as PENDING.
        if trial.trial_id in self.waiting and trial.checkpoint is None:
            del self.waiting[trial.trial_id]  # Ray kept no checkpoint of it: it trains to its rung again, and waits there
        if trial.trial_id in self.waiting:
            ray_internals.set_trial_status(trial, Trial.PAUSED)  # it waits at its rung again
        elif _last_event(self.events, trial.trial_id) == "stopped":
            ray_internals.set_trial_status(trial, Trial.TERMINATED)  # stopped at a rung; Ray's state had not said so
            return
        first = self.rungs[0] if self.rungs else None
        if first is not None and trial.trial_id in self.records[first]:
            # The searcher's saved state may predate what this file holds: it hears the first-rung result again.
            value = self.records[first][trial.trial_id]
            self._searcher_hook(tune_controller, "on_first_rung", trial.trial_id, value if self._mode == "max" else -value)
        if trial.status == Trial.PAUSED:
            self._searcher_hook(tune_controller, "on_pause", trial.trial_id)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if TIME_ATTR not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        epoch, trial_id = int(result[TIME_ATTR]), trial.trial_id
        self._number(trial)
        if trial_id in self.ended:  # stopped at a rung before a kill; Ray's state had not said so yet
            return TrialScheduler.STOP
        if epoch not in self.records or epoch >= self.planned[trial_id]:
            return TrialScheduler.CONTINUE  # not a rung, or its last epoch
        if trial_id not in self.records[epoch]:
            self.records[epoch][trial_id] = self._score(float(result[self._metric]))
            self._save()
            self._settle(self._finishing(tune_controller))
        # else a rung reported again (a retry, or a trial Ray's state had no checkpoint of): as decided before
        if trial_id in self.promoted[epoch]:
            return TrialScheduler.CONTINUE
        if trial_id in self.ended:
            return TrialScheduler.STOP
        if not result.get(SHOULD_CHECKPOINT):  # Ray marks a result that came with a checkpoint (tune.result)
            return self._decide_without_pause(trial_id, epoch)
        self.waiting[trial_id] = epoch
        self._event(trial_id, epoch, "paused")
        self._searcher_hook(tune_controller, "on_pause", trial_id)
        return TrialScheduler.PAUSE

    def _decide_without_pause(self, trial_id: str, epoch: int) -> str:
        """No checkpoint at this rung (someone else's trainable): a pause would lose epochs, so the trial is judged
        at once against the trials there so far, as Ray's stopping ASHA would; this one decision then depends on
        timing."""
        self._judge_as_ray_would(trial_id, epoch)
        return TrialScheduler.CONTINUE if trial_id in self.promoted[epoch] else TrialScheduler.STOP

    def _judge_as_ray_would(self, trial_id: str, rung: int) -> None:
        """Ray's stopping rule against the trials judged at `rung` before this one: it goes on if its result is at
        least the (1 - 1/rf) quantile of theirs (the first passes), else it stops there."""
        recorded = self.records[rung]
        before = [recorded[t] for t in self.decided[rung] if t != trial_id]
        if trial_id not in self.decided[rung]:
            self.decided[rung].append(trial_id)
        if not before or recorded[trial_id] >= _cutoff(before, self.rf):
            self._go_on(trial_id, rung)
        else:
            self._stop(trial_id, rung)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self._ended(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._ended(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        rung = self.waiting.pop(trial.trial_id, None)
        if rung is not None and trial.trial_id not in self.ended:
            self._stop(trial.trial_id, rung)
        self._ended(tune_controller, trial)

    def _ended(self, tune_controller: Any, trial: Trial) -> None:
        self._number(trial)
        self.waiting.pop(trial.trial_id, None)
        if trial.trial_id not in self.ended:
            self.ended[trial.trial_id] = int((trial.last_result or {}).get(TIME_ATTR, 0))
            self._save()
        self._settle(self._finishing(tune_controller))

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trials = tune_controller.get_trials()
        known = self._numbered
        for trial in trials:
            self._number(trial)
        # Ray asks on every step of its loop: settle again only when a trial is new here or the searcher has just
        # finished (results and ends settle as they come); a 1,000-trial search would sort its trials each time.
        finishing = self._finishing(tune_controller)
        if self._numbered != known or finishing != self._settled_finishing:
            self._settle(finishing)
            self._settled_finishing = finishing
        for trial in trials:  # stopped at a rung while it waited there
            if trial.status == Trial.PAUSED and trial.trial_id in self.ended:
                ray_internals.stop_trial(tune_controller, trial)
        # A trial just told to pause is RUNNING until Ray has saved its checkpoint, but its slot is free: its
        # successor chosen now is staged before Ray stops the pausing trial, and Ray hands it that trial's process.
        running = [t for t in trials if t.status == Trial.RUNNING and t.trial_id not in self.waiting]
        if self.slots is not None and len(running) >= self.slots:
            return None
        pending = [t for t in trials if t.status == Trial.PENDING]
        if pending:  # breadth first: a new trial reaches the first rung before a kept one goes on
            return min(pending, key=lambda t: self.order[t.trial_id])
        ready = [t for t in trials if t.status == Trial.PAUSED and t.trial_id in self.waiting
                 and t.trial_id in self.promoted[self.waiting[t.trial_id]]]
        if ready:  # the lowest rung first: the longest run left starts first, so the last to end ends soonest
            trial = min(ready, key=lambda t: (self.waiting[t.trial_id], self.order[t.trial_id]))
            del self.waiting[trial.trial_id]
            self._save()
            self._searcher_hook(tune_controller, "on_unpause", trial.trial_id)
            return trial
        if not running and finishing:
            for trial in trials:  # nothing runs and nothing can go on: the search is over
                if trial.status == Trial.PAUSED and trial.trial_id in self.waiting:
                    self._stop(trial.trial_id, self.waiting[trial.trial_id])
                    ray_internals.stop_trial(tune_controller, trial)
        return None

    @staticmethod
    def _finishing(tune_controller: Any) -> bool:
        """No new trial will come: what is left of the search is in its trials already."""
        search_alg = ray_internals.search_algorithm(tune_controller)
        return search_alg is not None and search_alg.is_finished()

    @staticmethod
    def _searcher_hook(tune_controller: Any, name: str, *args: Any) -> None:
        search_alg = ray_internals.search_algorithm(tune_controller)
        for target in (search_alg, getattr(search_alg, "searcher", None)):  # Ray wraps a Searcher in a SearchGenerator
            if isinstance(target, RungListener):
                getattr(target, name)(*args)

    def debug_string(self) -> str:
        counts = ", ".join(f"epoch {r}: {len(self.records[r])} reached, {len(self.promoted[r])} went on"
                           + (f" (at most {self.caps[r]} by rank)" if r in self.caps else "") for r in self.rungs)
        return f"Using {type(self).__name__} (rf {self.rf:g}): {counts}; {len(self.waiting)} waiting"


class StoppingASHA(RungScheduler):
    """ASHA's stopping variant (`scheduler: asha`): a trial at a rung goes on if it is in the top 1/rf of the trials
    before it there (Ray's cutoff: the (1 - 1/rf) quantile of their results), else it stops; the first trial passes.
    Ray's `ASHAScheduler` makes the same comparison with whichever trials reported there first."""

    def _decide(self, trial_id: str, rung: int) -> None:
        self._judge_as_ray_would(trial_id, rung)

    def _close(self, rung: int) -> None:  # nothing waits for a promotion
        self.closed.append(rung)


class PromotionASHA(RungScheduler):
    """ASHA's promotion variant (`scheduler: promotion`, see the module docstring): a trial waits at a rung and goes
    on once it is among the top 1/rf of the trials judged there, up to the rung's cap; when a rung closes, its best
    waiting trials go on until `finalists` have, and the rest stop there."""

    promotes = True

    def _decide(self, trial_id: str, rung: int) -> None:
        self.decided[rung].append(trial_id)
        quota = math.floor(len(self.decided[rung]) / self.rf)
        for other in self._ranked(rung)[:quota]:
            if other not in self.promoted[rung] and other not in self.ended and self._under_cap(rung):
                self._go_on(other, rung)

    def _under_cap(self, rung: int) -> bool:
        cap = self.caps.get(rung)
        return cap is None or len(self.promoted[rung]) < cap

    def _close(self, rung: int) -> None:
        self.closed.append(rung)
        for trial_id in self._ranked(rung):
            if trial_id in self.promoted[rung] or trial_id in self.ended:
                continue
            if len(self.promoted[rung]) < self.finalists:
                self.finishers.append(trial_id)
                self._go_on(trial_id, rung)
            else:
                self._stop(trial_id, rung)
        self._save()


def _cutoff(values: list[float], reduction_factor: float) -> float:
    """Ray's ASHA cutoff: the (1 - 1/rf) quantile of the results at a rung (linear interpolation)."""
    import numpy as np

    return float(np.nanpercentile(values, (1 - 1 / reduction_factor) * 100))


def _last_event(events: list[dict[str, Any]], trial_id: str) -> str | None:
    return next((e["event"] for e in reversed(events) if e["trial_id"] == trial_id), None)


def read_events(folder: str) -> list[dict[str, Any]]:
    """The paused / promoted / stopped events of a promotion-ASHA search (none for other searches)."""
    path = Path(folder) / SCHEDULER_STATE
    if is_remote(folder) or not path.is_file():
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


@runtime_checkable
class RungListener(Protocol):
    """A searcher the rung scheduler tells of its rungs: a trial that waits at one (it must not hold a place under
    max_concurrent while it waits), one that goes on, and each trial's result at the first rung (what
    OrderedOptunaSearch learns from, told again where its saved state may have missed it)."""

    def on_pause(self, trial_id: str) -> None: ...

    def on_unpause(self, trial_id: str) -> None: ...

    def on_first_rung(self, trial_id: str, value: float) -> None: ...


class PauseAwareVariantGenerator(BasicVariantGenerator):
    """Ray's grid / random generator, whose `max_concurrent` (--max-concurrent) does not count paused trials:
    without that `--max-concurrent 1` with promotion ASHA stalls as soon as the first trial waits at a rung."""

    def on_pause(self, trial_id: str) -> None:
        ray_internals.hold_place(self, trial_id, False)

    def on_unpause(self, trial_id: str) -> None:
        ray_internals.hold_place(self, trial_id, True)

    def on_first_rung(self, trial_id: str, value: float) -> None:
        pass  # a grid or random draw does not learn


class PauseAwareLimiter(ConcurrencyLimiter):
    """Ray's ConcurrencyLimiter, except that a trial paused at a rung does not hold a place.

    Ray's limiter counts every trial it let through until it completes: with two slots and two
    trials waiting at a rung it would never suggest a third, and the search would stall.
    """

    def __init__(self, searcher: Any, max_concurrent: int) -> None:
        super().__init__(searcher, max_concurrent=max_concurrent)
        self.paused: set[str] = set()

    def on_pause(self, trial_id: str) -> None:
        if ray_internals.hold_place(self, trial_id, False):
            self.paused.add(trial_id)
        if isinstance(self.searcher, RungListener):
            self.searcher.on_pause(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        if trial_id in self.paused:
            self.paused.discard(trial_id)
            ray_internals.hold_place(self, trial_id, True)
        if isinstance(self.searcher, RungListener):
            self.searcher.on_unpause(trial_id)

    def on_first_rung(self, trial_id: str, value: float) -> None:
        if isinstance(self.searcher, RungListener):
            self.searcher.on_first_rung(trial_id, value)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.paused:  # stopped while waiting at a rung
            self.paused.discard(trial_id)
            return self.searcher.on_trial_complete(trial_id, result=result, error=error)
        return super().on_trial_complete(trial_id, result=result, error=error)


class OrderedOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch whose suggestions depend on the trials' results only, not on when they came.

    Ray's OptunaSearch tells Optuna each result as it arrives, so trial k's suggestion depends on which
    trials happened to have reported by the time a slot freed, and on how many slots there are (Optuna's
    docs say the same of its own `n_jobs > 1`). Here Optuna learns of the trials in their order, and of
    each only its result at the search's first decision epoch (`first_rung`: the first rung, or the last
    epoch without one), told as a trial pruned there: trial k is suggested once every trial up to k - 2
    has that result, and Optuna then knows exactly those (`lag` = 1: the trial just before k may still
    run beside it, so one slot or two ask the same). What Optuna makes of pruned trials: TPE ranks them
    by their value at that epoch. Later results never reach Optuna: when they arrive depends on the
    scheduler's pauses, and they would make the suggestions depend on it again.
    A trial that ended before its first rung (failed) is told FAIL; Optuna leaves it out.
    """

    def __init__(self, *args: Any, first_rung: int, lag: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_rung, self.lag = int(first_rung), int(lag)
        self.sequence: list[str] = []  # trials in the order they were suggested
        self.values: dict[str, float | None] = {}  # trial -> its metric at the first rung (None: ended before it)
        self.told = 0  # Optuna knows the first `told` trials of `sequence`

    def suggest(self, trial_id: str) -> dict | None:
        visible = max(0, len(self.sequence) - self.lag)
        if any(t not in self.values for t in self.sequence[self.told:visible]):
            return None  # an earlier trial's first-rung result is still to come: Ray asks again
        for earlier in self.sequence[self.told:visible]:
            self._tell(earlier)
        self.told = max(self.told, visible)
        params = super().suggest(trial_id)
        if isinstance(params, dict) and trial_id not in self.sequence:
            self.sequence.append(trial_id)
        return params

    def _tell(self, trial_id: str) -> None:
        import optuna

        study, trial = ray_internals.optuna_study(self), ray_internals.optuna_trial(self, trial_id)
        value = self.values[trial_id]
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        trial.report(value, self.first_rung)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    def on_pause(self, trial_id: str) -> None:
        pass  # a waiting trial's result at the first rung is told already

    def on_unpause(self, trial_id: str) -> None:
        pass

    def on_first_rung(self, trial_id: str, value: float) -> None:
        self.values.setdefault(trial_id, value)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if int(result.get(TIME_ATTR, 0)) == self.first_rung and self.metric in result:
            self.on_first_rung(trial_id, float(result[self.metric]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and not error:
            self.on_trial_result(trial_id, result)  # a trial stopped at its first rung: Ray skipped on_trial_result
        if trial_id not in self.values:
            reached = int((result or {}).get(TIME_ATTR, 0))
            last = (result or {}).get(self.metric)
            # a trial planned shorter than the first rung ended with its value; anything else failed before it
            self.values[trial_id] = float(last) if last is not None and not error and reached < self.first_rung \
                and reached >= _planned(result) else None


def _planned(result: dict | None) -> int:
    """The last epoch a result's trial was planned for (its sweep case's or its config's epochs), 0 if unknown."""
    for key in ("config/case/epochs", "config/epochs"):
        try:
            return int((result or {})[key])
        except (KeyError, TypeError, ValueError):
            continue
    return 0
