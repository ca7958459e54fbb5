"""The report's PNGs, drawn with matplotlib from a search record (see reports.record)."""
from __future__ import annotations

import math
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from reports import units  # noqa: E402
from reports.record import Status, Summary, TrialRow  # noqa: E402
from reports.seeds import repeated  # noqa: E402
from reports.table import TERMINAL_TRIALS, ranked_trials, setting_label  # noqa: E402
from labspec.plotting import epoch_axis, point_size  # noqa: E402
from labspec.registry import LABS, get_lab  # noqa: E402

DPI = 120
COINCIDING = 0.002  # curves closer than this share of the axis's height look like one line
SPLIT_STYLE = {"train": "-", "val": "--", "test": ":"}


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _wide(series: Any) -> bool:
    """Positive values that span 100x or more: on a linear axis, linreg's loss (24 at epoch 1 of its
    slowest trial, 1e-4 from epoch 2 of the good ones) drew every good trial as one flat line at zero."""
    values = [v for s in series for v in s if v is not None and math.isfinite(v)]
    return bool(values) and min(values) > 0 and max(values) >= 100 * min(values)


def _log_if_wide(ax: Any, series: Any) -> None:
    """A log y-axis where the values are `_wide`."""
    if _wide(series):
        ax.set_yscale("log")


def _epochs(history: dict[str, list[Any]]) -> list[int]:
    """Epoch numbers of a trial's history (summaries written before they were stored: 1..n)."""
    if "training_iteration" in history:
        return history["training_iteration"]
    return list(range(1, 1 + max(len(v) for v in history.values())))


def _scored(record: Summary) -> list[TrialRow]:
    """Trials that reported the searched metric at least once."""
    return [t for t in record["trials"] if (t.get("best") or {}).get(record["metric"]) is not None]


def _metric_groups(metrics: list[str]) -> list[tuple[str, list[str]]]:
    """Panels of one kind each: accuracies, losses, then one per other kind, its splits together
    (val_mse and test_mse share a panel; d_loss and g_loss are losses)."""
    accuracy = [m for m in metrics if m.endswith("_acc")]
    loss = [m for m in metrics if m.endswith("_loss")]
    groups = [("accuracy", accuracy), ("loss", loss)]
    kinds: dict[str, list[str]] = {}
    for m in metrics:
        if m not in accuracy and m not in loss:
            kind = m.split("_", 1)[1] if "_" in m and _split(m) in SPLIT_STYLE else m
            kinds.setdefault(kind, []).append(m)
    groups += list(kinds.items())
    return [(title, ms) for title, ms in groups if ms]


def _split(metric: str) -> str:
    return metric.split("_", 1)[0]


def _seed_band(trial: TrialRow, metric: str, scale: float) -> tuple[list[float], list[float]] | None:
    """Lowest and highest seed value of `metric` per epoch (a repeated search's trials only).

    Min-max rather than +- std: with 3-5 seeds it shows every seed, and needs no assumption.
    """
    runs = [h[metric] for h in (trial.get("seed_history") or {}).values() if metric in h]
    if len(runs) < 2:
        return None
    nan = float("nan")
    per_epoch = [[scale * v for v in values if v is not None] for values in zip(*runs)]
    return [min(v) if v else nan for v in per_epoch], [max(v) if v else nan for v in per_epoch]


def _band_handle(trial: TrialRow) -> tuple[Any, str]:
    from matplotlib.patches import Patch

    return Patch(color="grey", alpha=0.25), f"band: min-max over {len(trial['seed_history'])} seeds (line: mean)"


def best_run_curves(record: Summary, path: Path) -> Path | None:
    """Train / val / test curves of the best trial, one panel per kind of metric."""
    best_id = (record.get("best") or {}).get("trial_id")
    trial = next((t for t in record["trials"] if t["trial_id"] == best_id), None)
    if trial is None or not trial.get("history"):
        return None
    history = trial["history"]
    epochs = _epochs(history)
    groups = [(t, [m for m in ms if m in history]) for t, ms in _metric_groups(record["metrics"])]
    groups = [(t, ms) for t, ms in groups if ms]
    columns = min(3, len(groups))  # wrap: six metric groups in one row are too thin to read
    rows = -(-len(groups) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax, (title, metrics) in zip(axes.flat, groups):
        banded = False
        for m in metrics:
            scale = units.scale(m)
            values = [None if v is None else scale * v for v in history[m]]
            (line,) = ax.plot(epochs, values, SPLIT_STYLE.get(_split(m), "-"), marker="o", markersize=point_size(epochs, 3), label=m)
            band = _seed_band(trial, m, scale)
            if band:
                ax.fill_between(epochs, *band, color=line.get_color(), alpha=0.18, linewidth=0)
                banded = True
        if title != "accuracy":
            _log_if_wide(ax, (history[m] for m in metrics))
        ax.axvline(trial["best_epoch"], color="grey", linewidth=0.8, linestyle="-.", label=f"best epoch ({trial['best_epoch']})")
        ax.set_xlabel("epoch")
        epoch_axis(ax)
        ax.set_ylabel(f"{title} %" if all(units.is_percent(m) for m in metrics) else title)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if banded:
            handle, label = _band_handle(trial)
            handles.append(handle)
            labels.append(label)
        ax.legend(handles, labels, fontsize=8)
    seeds = f", mean of {len(trial['seed_history'])} seeds" if trial.get("seed_history") else ""
    title = f"Best trial: {setting_label(trial, record)} ({record['dataset']}{seeds})"
    fig.suptitle(textwrap.fill(title, width=int(9 * 5.2 * columns)))  # ~9 characters an inch: a long setting wraps
    return _save(fig, path)


# Above MANY_TRIALS trials the all-trials figure colours the TOP_TRIALS best; the rest are a thin grey mass.
MANY_TRIALS = 15
TOP_TRIALS = 10
REST_COLOUR = "0.6"  # grey, faint (more so the more trials): the crowd's shape and density under the best
# tab10 without its grey (the crowd's colour), black instead
TOP_COLOURS = [*(c for i, c in enumerate(plt.cm.tab10.colors) if i != 7), (0.0, 0.0, 0.0)]


def all_trials_curves(record: Summary, path: Path) -> Path | None:
    """Every trial's searched metric per epoch (see all_trials_figure), saved as `path`."""
    fig = all_trials_figure(record)
    return None if fig is None else _save(fig, path)


def all_trials_figure(record: Summary) -> Any:
    """Every trial's searched metric per epoch; where ASHA stopped a trial is marked with x, and
    (promotion ASHA) where a trial waited at a rung and was promoted from it with ^. Of more than
    MANY_TRIALS trials only the TOP_TRIALS best (reports.table.ranked_trials) have a colour and a
    legend entry; the others are drawn underneath in light grey. None when no trial reported."""
    metric = record["metric"]
    trials = [t for t in record["trials"] if t.get("history", {}).get(metric)]
    if not trials:
        return None
    if len(trials) > MANY_TRIALS:
        return _top_trials_figure(record, trials)
    many = len(trials) > len(plt.cm.tab10.colors)  # more lines than tab10 has colours: tab20's, a wider figure
    fig, ax = plt.subplots(figsize=(12, 5.5) if many else (8.5, 5))
    colours = plt.cm.tab20(range(20)) if many else plt.cm.tab10(range(10))
    marks: set[str] = set()
    heights = _heights(record, trials)
    tolerance = COINCIDING * _span(heights)
    drawn: list[tuple[tuple[list[int], list[float | None]], str]] = []
    for i, (trial, curve) in enumerate(zip(trials, heights)):
        label = setting_label(trial, record)
        twin = next((name for other, name in drawn if _coincide(curve, other, tolerance)), None)
        _trial_curve(ax, record, trial, colours[i % len(colours)], label if twin is None else f"{label} (dashed: on {twin})",
                     marks, dashed=twin is not None)
        drawn.append((curve, label))
    handles, labels = ax.get_legend_handles_labels()
    _axes_text(ax, record, trials, marks, handles, labels, f"{len(trials)} trials")
    if many:  # beside the plot, where it hides no curve
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(handles, labels, fontsize=7, loc="best")
    return fig


def _scaled(record: Summary, trial: TrialRow) -> tuple[list[int], list[float | None]]:
    """A trial's epochs and its searched metric as the figure draws it."""
    scale = units.scale(record["metric"])
    return _epochs(trial["history"]), [None if v is None else scale * v for v in trial["history"][record["metric"]]]


def _heights(record: Summary, trials: list[TrialRow]) -> list[tuple[list[int], list[float | None]]]:
    """Each trial's curve as heights on the axis the figure will use: _axes_text puts a loss that spans 100x
    on a log axis, where its heights are the logarithms."""
    curves = [_scaled(record, t) for t in trials]
    if record["metric"].endswith("_acc") or not _wide(values for _, values in curves):
        return curves
    return [(epochs, [math.log10(v) if v is not None and v > 0 else None for v in values]) for epochs, values in curves]


def _span(curves: list[tuple[list[int], list[float | None]]]) -> float:
    values = [v for _, vs in curves for v in vs if v is not None and math.isfinite(v)]
    return max(values) - min(values) if values else 0.0


def _coincide(curve: tuple[list[int], list[float | None]], other: tuple[list[int], list[float | None]], tolerance: float) -> bool:
    """The two curves cover each other: the same epochs, heights within `tolerance`. (A shorter curve on a longer
    one's first epochs is drawn on top of it instead, see _trial_curve.)"""
    (epochs, values), (other_epochs, other_values) = curve, other
    if len(epochs) < 2 or epochs != other_epochs:  # a lone point has no line to dash
        return False
    return all((a is None) == (b is None) and (a is None or abs(a - b) <= tolerance) for a, b in zip(values, other_values))


def _trial_curve(ax: Any, record: Summary, trial: TrialRow, colour: Any, label: str, marks: set[str],
                 promoted_size: float = 9, dashed: bool = False) -> None:
    """One trial's line in its colour, its seed band, and its promoted / stopped / failed marks (named in `marks`).
    `dashed`: its curve lies on one drawn before (lab 1's faithful nll is cross-entropy), which shows through the gaps."""
    metric = record["metric"]
    scale = units.scale(metric)
    variants = list(record.get("variants") or {})
    epochs, values = _scaled(record, trial)
    variant = trial["config"].get("variant")
    style = ("-", "--", ":")[variants.index(variant) % 3] if variant in variants else "-"
    # Shorter trials on top: a search over epochs trains the same curve longer (lab 5's 10, 30, 50 and
    # 70 epochs), and the longest, drawn last, hid the others along the whole of its length.
    (line,) = ax.plot(epochs, values, style, marker="o" if len(epochs) == 1 else ".",
                      markersize=point_size(epochs, 4), linewidth=2.2 if dashed else 1.3,
                      color=colour, label=label, zorder=2 + 1 / len(epochs) + 0.001 * dashed)
    if dashed:
        line.set_dashes((3, 3))
    band = _seed_band(trial, metric, scale)
    if band:
        ax.fill_between(epochs, *band, color=line.get_color(), alpha=0.15, linewidth=0)
        marks.add("band")
    for event in trial.get("schedule") or []:  # promotion ASHA: paused at a rung, then promoted from it
        if event["event"] == "promoted" and event["epoch"] in epochs:
            at = epochs.index(event["epoch"])
            ax.plot(epochs[at], values[at], "^", color=line.get_color(), markersize=promoted_size, markeredgecolor="black")
            marks.add("promoted")
    if trial["status"] == Status.STOPPED_EARLY:
        ax.plot(epochs[-1], values[-1], "x", color=line.get_color(), markersize=11, markeredgewidth=2.5)
        marks.add("stopped")
    elif trial["status"] == Status.ERRORED:
        ax.plot(epochs[-1], values[-1], "X", color="red", markersize=11)
        marks.add("failed")


def _axes_text(ax: Any, record: Summary, trials: list[TrialRow], marks: set[str],
               handles: list[Any], labels: list[str], counted: str) -> None:
    """The marks' legend entries (appended to handles / labels), the ASHA rungs, axis labels and title."""
    metric = record["metric"]
    if "stopped" in marks:
        handles.append(Line2D([], [], color="black", marker="x", linestyle="", markersize=9, markeredgewidth=2))
        labels.append("stopped at a rung" if record.get("scheduler") == "promotion" else f"{Status.STOPPED_EARLY} by ASHA")
    if "promoted" in marks:
        handles.append(Line2D([], [], color="grey", marker="^", markeredgecolor="black", linestyle="", markersize=8))
        labels.append("paused at a rung, promoted later")
    if "failed" in marks:
        handles.append(Line2D([], [], color="red", marker="X", linestyle="", markersize=9))
        labels.append("failed")
    if "band" in marks:
        handle, label = _band_handle(next(t for t in trials if t.get("seed_history")))
        handles.append(handle)
        labels.append(label)
    if not metric.endswith("_acc"):
        _log_if_wide(ax, (t["history"][metric] for t in trials))
    for rung in record.get("rungs") or []:
        ax.axvline(rung, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlabel("epoch" + (" (dotted: ASHA rungs)" if record.get("rungs") else ""))
    ax.set_ylabel(metric.replace("_acc", " accuracy %"))
    each = f", each the mean of {record['repeats']} seeds" if repeated(record) else ""
    ax.set_title(f"{metric} of every trial ({counted}{each})")
    ax.grid(alpha=0.3)
    epoch_axis(ax)


def _top_and_rest(record: Summary, trials: list[TrialRow]) -> tuple[list[TrialRow], list[TrialRow]]:
    """The TOP_TRIALS best of `trials` (best first, by reports.table.ranked_trials) and the others (trial order)."""
    drawn = {t["trial_id"] for t in trials}
    top = [t for t in ranked_trials(record) if t["trial_id"] in drawn][:TOP_TRIALS]
    top_ids = {t["trial_id"] for t in top}
    return top, [t for t in trials if t["trial_id"] not in top_ids]


def _grey_rest(ax: Any, rest: list[dict[str, Any]], metric: str, scale: float, label: str) -> None:
    """`metric` of every trial in `rest` as one thin grey line beneath the others, broken by NaN between
    trials (a thousand trials draw as fast as one); the more trials, the fainter, so their density shows."""
    nan = float("nan")
    xs: list[float] = []
    ys: list[float] = []
    alone: list[tuple[float, float]] = []  # a trial of one epoch is a point, not a line: a dot shows it
    for trial in rest:
        values = [nan if v is None else scale * v for v in trial["history"][metric]]
        xs += [*_epochs(trial["history"]), nan]
        ys += [*values, nan]
        if len(values) == 1:
            alone.append((xs[-2], values[0]))
    alpha = min(0.7, 6 / math.sqrt(max(1, len(rest))))
    ax.plot(xs, ys, "-", color=REST_COLOUR, linewidth=0.6, alpha=alpha, zorder=1, label=label)
    if alone:
        ax.plot(*zip(*alone), ".", color=REST_COLOUR, markersize=4, alpha=min(1, 2 * alpha), zorder=1)


def _top_trials_figure(record: Summary, trials: list[TrialRow]) -> Any:
    """The all-trials figure of a big search: the TOP_TRIALS best in colour, labelled with their setting
    and best value, over every other trial as one thin light-grey line (its marks small and grey)."""
    metric = record["metric"]
    scale = units.scale(metric)
    top, rest = _top_and_rest(record, trials)
    fig, ax = plt.subplots(figsize=(12.5, 6))
    _grey_rest(ax, rest, metric, scale, f"{len(rest)} other trials")
    stopped: list[tuple[float, float]] = []
    failed: list[tuple[float, float]] = []
    promoted: list[tuple[float, float]] = []
    marks: set[str] = set()
    for trial in rest:  # their marks, small and grey
        epochs = _epochs(trial["history"])
        values = [float("nan") if v is None else scale * v for v in trial["history"][metric]]
        for event in trial.get("schedule") or []:
            if event["event"] == "promoted" and event["epoch"] in epochs:
                promoted.append((event["epoch"], values[epochs.index(event["epoch"])]))
        if trial["status"] == Status.STOPPED_EARLY:
            stopped.append((epochs[-1], values[-1]))
        elif trial["status"] == Status.ERRORED:
            failed.append((epochs[-1], values[-1]))
    for points, marker, colour, name in ((stopped, "x", "0.55", "stopped"), (promoted, "^", "0.55", "promoted"),
                                         (failed, "X", "red", "failed")):
        if points:
            ax.plot(*zip(*points), marker, color=colour, markersize=4, alpha=0.6, linestyle="", zorder=1.5)
            marks.add(name)
    for i, trial in enumerate(top):
        best = (trial.get("best") or {}).get(metric)
        value = "" if best is None else f": {units.text(metric, best)}"  # as the table and paragraphs write it
        label = textwrap.fill(setting_label(trial, record) + value, width=48, subsequent_indent="  ")
        _trial_curve(ax, record, trial, TOP_COLOURS[i % len(TOP_COLOURS)], label, marks, promoted_size=6)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(handles.pop(0))  # the grey rest after the coloured best
    labels.append(labels.pop(0))
    if record.get("rungs"):
        handles.append(Line2D([], [], color="grey", linewidth=0.8, linestyle=":"))
        labels.append("ASHA rungs: epoch " + ", ".join(str(r) for r in record["rungs"]))
    _axes_text(ax, record, trials, marks, handles, labels,
               f"{len(trials)} trials; in colour the {len(top)} best by {metric}, best first")
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def loss_curves(record: Summary, path: Path) -> Path | None:
    """Train (dashed) and validation (solid) loss per epoch of every trial, one colour per trial.

    For labs without accuracies (seq2seq, autoencoders) this is the lab's "loss curves per
    data size" when the search varies the data (e.g. seq2seq's max_length search). The axis says
    what the loss measures (the lab's `loss_unit`); trials whose settings make it measure different
    things (the VAE's faithful loss against its ELBO) get a panel each, never one shared axis.
    """
    trials = [t for t in record["trials"] if t.get("history", {}).get("train_loss") and t["history"].get("val_loss")]
    if not trials or any(m.endswith("_acc") for m in record["metrics"]):
        return None
    unit_of = get_lab(record["lab"]).loss_unit_of if record["lab"] in LABS else (lambda config: "loss")
    groups: dict[str, list[dict[str, Any]]] = {}
    for trial in trials:
        groups.setdefault(unit_of(trial.get("config") or {}), []).append(trial)
    many = len(trials) > MANY_TRIALS
    width, height = (12.5, 6) if many else (8.5, 5)
    fig, axes = plt.subplots(len(groups), 1, figsize=(width, height * (1 if len(groups) == 1 else 0.75 * len(groups))),
                             squeeze=False)
    colours = TOP_COLOURS if many else plt.cm.tab10(range(10))
    for ax, (unit, members) in zip(axes[:, 0], groups.items()):
        _log_if_wide(ax, (t["history"][split] for t in members for split in ("train_loss", "val_loss")))
        shown = members
        if many:  # the best in colour, the others' validation loss a grey mass beneath
            shown, rest = _top_and_rest(record, members)
            _grey_rest(ax, rest, "val_loss", 1, f"{len(rest)} other trials: val")
        # Few trials: each keeps its colour whichever panel it is in; many: each panel's best in TOP_COLOURS' order.
        index = {id(t): i for i, t in enumerate(shown if many else trials)}
        for trial in shown:
            epochs, colour = _epochs(trial["history"]), colours[index[id(trial)] % len(colours)]
            label = setting_label(trial, record)
            ax.plot(epochs, trial["history"]["val_loss"], "-", marker=".", color=colour, label=f"{label}: val")
            ax.plot(epochs, trial["history"]["train_loss"], "--", marker="x", markersize=4, color=colour,
                    label=f"{label}: train")
        ax.set_ylabel("\n".join(textwrap.wrap(unit, 28)), fontsize=9)
        ax.grid(alpha=0.3)
        epoch_axis(ax)
        handles, labels = ax.get_legend_handles_labels()
        if many:
            handles, labels = handles[1:] + handles[:1], labels[1:] + labels[:1]
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1, 0].set_xlabel("epoch")
    best = f"; in colour the best by {record['metric']}" if many else ""
    split = "; one panel per kind of loss" if len(groups) > 1 else ""
    title = f"Train (dashed) and validation (solid) loss of each trial ({record['dataset']}{best}{split})"
    axes[0, 0].set_title("\n".join(textwrap.wrap(title, 70)))
    return _save(fig, path)


def param_scatter(record: Summary, path: Path) -> Path | None:
    """Each searched parameter against the best metric of each trial (random / Optuna searches)."""
    params = record.get("params") or {}
    metric = record["metric"]
    scored = _scored(record)
    if not params or not scored:
        return None
    scale = units.scale(metric)
    many = len(scored) > MANY_TRIALS
    if many:  # smaller points, the completed trials drawn over the stopped ones
        scored = sorted(scored, key=lambda t: t["status"] != Status.STOPPED_EARLY)
    fig, axes = plt.subplots(1, len(params), figsize=(5 * len(params), 4), squeeze=False)
    for ax, (name, spec) in zip(axes[0], params.items()):
        (distribution,) = spec
        xs = [t["config"].get(name) for t in scored]
        ys = [scale * t["best"][metric] for t in scored]
        colours = ["tab:orange" if t["status"] == Status.STOPPED_EARLY else "tab:blue" for t in scored]
        if distribution in ("grid", "choice"):
            labels = [str(v) for v in spec[distribution]]
            xs = [labels.index(str(x)) if str(x) in labels else -1 for x in xs]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(xs, ys, c=colours, edgecolors="black", **({"s": 14, "linewidths": 0.2} if many else {"linewidths": 0.5}))
        if distribution == "loguniform":
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(metric.replace("_acc", " accuracy %"))
        ax.grid(alpha=0.3)
    counted = f" ({len(scored)} trials)" if many else ""
    axes[0][0].set_title(f"blue: {Status.COMPLETED}, orange: {Status.STOPPED_EARLY}{counted}", fontsize=9)
    return _save(fig, path)


def param_importance(record: Summary, path: Path) -> Path | None:
    """Optuna's fANOVA importance of each searched parameter for the metric."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    params = record.get("params") or {}
    metric = record["metric"]
    scored = _scored(record)
    if len(params) < 2 or len(scored) < 4:
        return None  # importance of one parameter is trivially 1
    distributions = {}
    for name, spec in params.items():
        (kind, args), = spec.items()
        if kind in ("grid", "choice"):
            distributions[name] = CategoricalDistribution(args)
        elif kind == "randint":
            distributions[name] = IntDistribution(args[0], args[1])
        else:
            distributions[name] = FloatDistribution(args[0], args[1], log=kind == "loguniform")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if record["mode"] == "max" else "minimize")
    for t in scored:
        study.add_trial(optuna.trial.create_trial(
            params={n: t["config"][n] for n in params}, distributions=distributions, value=t["best"][metric],
        ))
    importance = optuna.importance.get_param_importances(study, target=None)
    fig, ax = plt.subplots(figsize=(6, 0.6 * len(importance) + 1.5))
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance for {metric} (fANOVA, sums to 1)")
    ax.set_xlim(0, 1)
    return _save(fig, path)


def _epochs_in_words(count: int) -> str:
    return f"{count} epoch" + ("" if count == 1 else "s")


def promotion_schedule(record: Summary) -> str:
    """Markdown: where each trial of a promotion-ASHA search paused, was promoted or stopped; '' otherwise."""
    rows = [t for t in record["trials"] if t.get("schedule")]
    if not rows:
        return ""
    rungs = ", ".join(str(r) for r in record.get("rungs") or [])
    caps = record.get("rung_caps") or []  # absent from a search run before the caps
    capped = (", and at most " + ", ".join(f"{c} at epoch {r}" for r, c in zip(record["rungs"], caps))
              + " (what synchronous successive halving would promote over the whole search)") if caps else ""
    lines = ["## Promotion ASHA: where each trial waited", "",
             f"Trials pause at epochs {rungs} and go on only when among the top 1/rf of those that reached "
             f"the same epoch{capped}; a freed slot goes to a promotable trial first. Once no new trial will come, "
             "as many trials as there are slots go on to the end; what still waits then is stopped.", ""]
    shown = rows
    if len(rows) > TERMINAL_TRIALS:  # a big search: its best trials, then how many stopped where
        waited = {t["trial_id"] for t in rows}
        shown = [t for t in ranked_trials(record) if t["trial_id"] in waited][:TERMINAL_TRIALS]
    for trial in shown:
        steps = "; ".join(f"{e['event']} at epoch {e['epoch']}" for e in trial["schedule"])
        lines.append(f"- {setting_label(trial, record)}: {steps}; {trial['status']} after {_epochs_in_words(trial['epochs_run'])}")
    if len(shown) < len(rows):
        stopped = Counter(t["epochs_run"] for t in rows if t["status"] == Status.STOPPED_EARLY)
        where = ", ".join(f"{n} at epoch {epoch}" for epoch, n in sorted(stopped.items())) or "none"
        lines.append(f"- ... and {len(rows) - len(shown)} more trials (above: the {len(shown)} best by {record['metric']}). "
                     f"Stopped, of all {len(rows)}: {where}; every trial's events are its `schedule` in summary.json.")
    return "\n".join(lines)
