"""The report of a big search (issue 19): the best trials in colour over a grey crowd, the terminal's
top 20, an HTML table sortable in the browser; small searches' reports as before."""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reports.record import pick_best, trial_row
from tests.browser import rendered_dom, requires_chromium
from tests.test_report import html_table_cells, md_table_cells

METRICS = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]


def _accuracy(lr: float, momentum: float, epoch: int, rng: random.Random) -> float:
    """A made-up learning curve: best near lr=0.01, better with momentum and epochs, a little noise."""
    quality = max(0.05, 1 - abs(math.log10(lr) + 2) / 3.5) * (0.8 + 0.2 * momentum)
    return min(0.995, 0.1 + 0.88 * quality * (1 - 0.6 ** epoch) + rng.gauss(0, 0.004))


def synthetic_record(n: int, *, seed: int = 0, scheduler: str = "asha", storage: str | None = None,
                     epochs: int = 10) -> dict[str, Any]:
    """A random search of `n` lr / momentum trials as summary.json has it, without Ray: each trial
    stops at a rung (epochs 1, 2, 4, 8) unless in the best half of the trials before it there;
    about one trial in 50 fails (half of those before their first epoch). `scheduler="promotion"`
    adds the pause / promotion events promotion ASHA records."""
    rng = random.Random(seed)
    rungs = [1, 2, 4, 8]
    header = {
        "experiment": f"synthetic-{n}", "lab": "mlp", "search": "lr_momentum", "search_file": "lr_momentum.yaml",
        "description": f"{n} random lr / momentum trials (synthetic)", "dataset": "mnist", "metric": "val_acc",
        "mode": "max", "metrics": METRICS, "varied": ["lr", "momentum"], "sweeps": {}, "variants": {},
        "params": {"lr": {"loguniform": [1e-5, 0.3]}, "momentum": {"uniform": [0.0, 0.9]}},
        "fixed": {"epochs": epochs, "batch_size": 128, "optimizer": "sgd"}, "algorithm": "random",
        "scheduler": scheduler, "scheduler_args": {"grace_period": 1, "reduction_factor": 2}, "rungs": rungs,
        "storage": storage or f"/tmp/tune-lab-results/synthetic-{n}", "repeats": 1, "subset": None,
    }
    seen: dict[int, list[float]] = {r: [] for r in rungs}
    rows = []
    for i in range(n):
        config = {"epochs": epochs, "batch_size": 128, "optimizer": "sgd",
                  "lr": 10 ** rng.uniform(-5, math.log10(0.3)), "momentum": rng.uniform(0.0, 0.9)}
        fails = rng.random() < 0.02
        history, schedule = [], []
        for epoch in range(1, epochs + 1):
            if fails and epoch > (0 if i % 2 else 3):
                break
            val = _accuracy(config["lr"], config["momentum"], epoch, rng)
            history.append({"training_iteration": epoch, "train_loss": 2.3 * (1 - val), "train_acc": val + 0.01,
                            "val_loss": 2.3 * (1 - val) + 0.02, "val_acc": val, "test_loss": 2.3 * (1 - val) + 0.03,
                            "test_acc": val - 0.002, "epoch_time_s": 0.5})
            if epoch in seen and epoch < epochs:
                earlier = sorted(seen[epoch], reverse=True)
                seen[epoch].append(val)
                keep = len(earlier) < 2 or val >= earlier[len(earlier) // 2]
                if scheduler == "promotion":
                    schedule.append({"epoch": epoch, "event": "paused"})
                    if keep:
                        schedule.append({"epoch": epoch, "event": "promoted"})
                if not keep:
                    break
        row = trial_row(trial_id=f"{i:05d}", config=config, history=pd.DataFrame(history) if history else None,
                        failed=fails, error="RuntimeError: loss is NaN" if fails else None, metric="val_acc",
                        mode="max", metrics=METRICS, varied=["lr", "momentum"])
        if schedule:
            row["schedule"] = schedule
        rows.append(row)
    return {**header, "trials": rows, "best": pick_best(rows, "val_acc", "max")}


def test_the_synthetic_search_has_what_a_real_one_has():
    record = synthetic_record(100)
    statuses = {t["status"] for t in record["trials"]}
    assert statuses == {"completed", "stopped early", "errored"}
    assert any(t["status"] == "errored" and not t.get("history") for t in record["trials"])  # failed before epoch 1
    assert record["best"]["trial_id"] in {t["trial_id"] for t in record["trials"]}


def _coloured_and_grey(fig) -> tuple[list[Any], list[Any]]:
    """The figure's trial lines: the labelled coloured ones and the grey rest (one line, NaN between trials)."""
    from matplotlib.colors import same_color

    from reports.figures import REST_COLOUR

    (ax,) = fig.axes
    lines = [line for line in ax.get_lines() if line.get_linestyle() != "None" and len(line.get_xdata()) > 0]
    grey = [line for line in lines if same_color(line.get_color(), REST_COLOUR)]
    coloured = [line for line in lines if not same_color(line.get_color(), REST_COLOUR) and line.get_linestyle() in ("-", "--", ":")
                and not line.get_label().startswith("_")]
    return coloured, grey


@pytest.mark.parametrize("scheduler", ["asha", "promotion"])
def test_a_big_searchs_figure_colours_the_ten_best_over_a_grey_crowd(scheduler):
    import matplotlib.pyplot as plt
    from matplotlib.colors import same_color, to_hex

    from reports.figures import all_trials_figure
    from reports.table import ranked_trials, setting_label

    record = synthetic_record(100, scheduler=scheduler)
    fig = all_trials_figure(record)
    try:
        coloured, grey = _coloured_and_grey(fig)
        (ax,) = fig.axes
        best10 = [t for t in ranked_trials(record) if t.get("history")][:10]
        # best first, named as the table names them, with their best value (a long label wraps)
        assert [" ".join(line.get_label().split()) for line in coloured] == [
            f"{setting_label(t, record)}: {100 * t['best']['val_acc']:.2f}%" for t in best10]  # reports.units: percent
        assert len({to_hex(line.get_color()) for line in coloured}) == 10  # ten distinct colours
        (rest,) = grey
        drawn = [t for t in record["trials"] if t.get("history")]
        assert rest.get_label() == f"{len(drawn) - 10} other trials"
        assert rest.get_zorder() < min(line.get_zorder() for line in coloured) and rest.get_linewidth() < 1
        assert sum(math.isnan(x) for x in rest.get_xdata()) == len(drawn) - 10  # one break after each trial
        one_epoch = [t for t in drawn if t["epochs_run"] == 1 and t not in best10]  # a dot each: no line shows them
        (dots,) = [line for line in ax.get_lines() if line.get_marker() == "." and same_color(line.get_color(), rest.get_color())]
        assert len(one_epoch) > 10 and len(dots.get_xdata()) == len(one_epoch)
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert len(legend) <= 10 + 5 and legend[10] == rest.get_label()
        assert "ASHA rungs: epoch 1, 2, 4, 8" in legend
        assert ("stopped at a rung" if scheduler == "promotion" else "stopped early by ASHA") in legend
        if scheduler == "promotion":
            assert "paused at a rung, promoted later" in legend
        rungs = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":" and same_color(line.get_color(), "grey"))
        assert rungs == record["rungs"] == [1, 2, 4, 8]  # vertical lines at grace_period * rf^k
    finally:
        plt.close(fig)


def test_fifteen_trials_keep_todays_figure_with_every_trial_in_the_legend():
    import matplotlib.pyplot as plt

    from reports.figures import all_trials_figure
    from reports.table import setting_label

    record = synthetic_record(15, seed=3)
    fig = all_trials_figure(record)
    try:
        (ax,) = fig.axes
        drawn = [t for t in record["trials"] if t.get("history")]
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert legend[:len(drawn)] == [setting_label(t, record) for t in drawn]  # trial order, no grey rest
        assert not any("other trials" in label for label in legend)
    finally:
        plt.close(fig)


def test_the_terminal_shows_the_best_twenty_and_where_the_rest_are(tmp_path):
    from reports.table import format_table, ranked_trials, setting_label

    record = synthetic_record(100, storage=str(tmp_path / "big"))
    lines = format_table(record).splitlines()
    rows = [line for line in lines if line.startswith("|")][2:]  # after the header and its |---| line
    assert len(rows) == 20
    assert [row.split("|")[1].strip() for row in rows] == [setting_label(t, record) for t in ranked_trials(record)[:20]]
    column = [c.strip() for c in lines[0].split("|")].index("val acc %")
    values = [float(row.split("|")[column]) for row in rows]
    assert values == sorted(values, reverse=True)
    assert f"... and 80 more trials in {tmp_path}/big/report/table.csv (above: the 20 best by val_acc)" in lines


def test_errored_trials_come_after_the_ranked_ones():
    from reports.table import format_table, ranked_trials

    record = synthetic_record(30, seed=1)
    for trial in record["trials"][5:25]:  # 20 failures before their first result, and 10 trials ranked
        trial.update(status="errored", error="boom", best=None, history={})
    scored = sum(bool(t.get("best")) for t in record["trials"])
    assert scored <= 10
    ranked = ranked_trials(record)
    assert [bool(t.get("best")) for t in ranked] == [True] * scored + [False] * (30 - scored)
    assert [t["trial_id"] for t in ranked[scored:]] == sorted(t["trial_id"] for t in ranked[scored:])  # trial order
    table = format_table(record)
    assert f"(above: the {scored} best by val_acc, then {20 - scored} without a result)" in table
    assert table.count("failed: ") == 20 - scored + sum(t["status"] == "errored" for t in ranked[:scored])


def test_twenty_trials_print_as_before():
    from reports.table import comparison_rows, format_table, text_table

    record = synthetic_record(20, seed=2)
    table = text_table(comparison_rows(record), [])
    printed = format_table(record)
    assert printed.startswith(table)  # every row, nothing cut; then only the one-seed note (reports.facts)
    assert printed[len(table):].strip().startswith("One seed per setting")
    assert "more trials in" not in format_table(record)


def _built(tmp_path: Path, n: int) -> tuple[dict[str, Any], Path]:
    from reports.build import build_report

    record = synthetic_record(n, storage=str(tmp_path))
    return record, build_report(record, tmp_path / "report")


def test_the_html_table_has_every_trial_and_the_sort_script(tmp_path):
    record, report = _built(tmp_path, 100)
    page = (report / "report.html").read_text()
    (table,) = html_table_cells(page)
    assert len(table) == 1 + 100
    assert page.count("<script>") == 1 and "src=" not in page.split("<script>")[1]  # inline, no external file
    assert 'addEventListener("click"' in page
    assert len(md_table_cells((report / "report.md").read_text())[0]) == 1 + 100  # report.md keeps every trial too
    assert len(pd.read_csv(report / "table.csv")) == 100


def test_parameter_figures_use_every_scored_trial(tmp_path, monkeypatch):
    """The scatter has a point per trial with a result; the importance study a trial per such trial."""
    import matplotlib.pyplot as plt
    import optuna

    from reports import figures

    record = synthetic_record(100)
    scored = [t for t in record["trials"] if (t.get("best") or {}).get("val_acc") is not None]
    points = []
    monkeypatch.setattr(plt, "close", lambda fig: points.extend(
        len(c.get_offsets()) for ax in fig.axes for c in ax.collections))
    figures.param_scatter(record, tmp_path / "params.png")
    assert points == [len(scored), len(scored)]  # lr, momentum
    studied = []
    real = optuna.importance.get_param_importances
    monkeypatch.setattr(optuna.importance, "get_param_importances",
                        lambda study, **kw: studied.append(len(study.trials)) or real(study, **kw))
    figures.param_importance(record, tmp_path / "importance.png")
    assert studied == [len(scored)]


def test_a_small_searchs_report_md_is_as_before(tmp_path):
    """Three trials: the Markdown table in trial order, every trial, no line about more."""
    from reports.table import comparison_rows, text_table

    record, report = _built(tmp_path, 3)
    md = (report / "report.md").read_text()
    assert text_table(comparison_rows(record), []) in md
    assert "more trials in" not in md and "other trials" not in md


@requires_chromium
def test_clicking_a_header_sorts_the_html_table(tmp_path):
    """In Chromium: a click on the val acc % header sorts rows by it, again the other way, blank cells
    last; a click on setting sorts by lr as a number (2.3e-05 before 0.0043)."""
    record, report = _built(tmp_path, 40)
    page = report / "report.html"
    clicks = page.read_text().replace("</body>", """<script>
const header = name => Array.from(document.querySelectorAll("th")).find(h => h.textContent === name);
const read = name => { const column = Array.from(header(name).parentNode.cells).indexOf(header(name));
  return Array.from(document.querySelectorAll("tbody tr")).map(r => r.cells[column].textContent).join(";"); };
header("val acc %").click(); document.body.dataset.up = read("val acc %");
header("val acc %").click(); document.body.dataset.down = read("val acc %");
header("setting").click(); document.body.dataset.settings = read("setting");
</script></body>""")
    page.write_text(clicks)
    dom = rendered_dom(page.as_uri())
    up, down, settings = (dom.split(f'data-{key}="')[1].split('"')[0].split(";") for key in ("up", "down", "settings"))
    shown = [v for v in up if v]
    assert len(up) == len(down) == 40 and shown == sorted(shown, key=float)
    assert [v for v in down if v] == sorted(shown, key=float, reverse=True)
    assert up[len(shown):] == down[len(shown):] == [""] * (40 - len(shown))  # blank cells last both ways
    lrs = [float(s.split(",")[0].removeprefix("lr=")) for s in settings]
    assert lrs == sorted(lrs) and lrs[0] < 1e-4 < lrs[-1]
    assert 'aria-sort="ascending"' in dom


def test_a_big_searchs_loss_figure_colours_the_ten_best_too(tmp_path, monkeypatch):
    """Labs without accuracies (seq2seq, autoencoders) draw train and val loss of each trial: of a big
    search the 10 best by the searched loss, the others' val loss grey beneath."""
    import matplotlib.pyplot as plt

    from reports import figures
    from reports.table import ranked_trials, setting_label

    record = {**synthetic_record(60), "lab": "ae", "metric": "val_loss", "mode": "min",
              "metrics": ["train_loss", "val_loss", "test_loss"]}
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    assert figures.loss_curves(record, tmp_path / "loss.png").is_file()
    coloured, grey = _coloured_and_grey(drawn[0])
    best10 = [t for t in ranked_trials(record) if t.get("history")][:10]
    assert [line.get_label() for line in coloured] == [
        f"{setting_label(t, record)}: {split}" for t in best10 for split in ("val", "train")]
    (rest,) = grey
    assert rest.get_label() == f"{sum(bool(t.get('history')) for t in record['trials']) - 10} other trials: val"
    legend = [text.get_text() for text in drawn[0].axes[0].get_legend().get_texts()]
    assert legend == [line.get_label() for line in coloured] + [rest.get_label()]


def test_the_promotion_schedule_of_a_big_search_lists_its_best_and_counts_the_rest():
    from reports.figures import promotion_schedule
    from reports.table import ranked_trials, setting_label

    record = synthetic_record(100, scheduler="promotion")
    lines = promotion_schedule(record).splitlines()
    listed = [line for line in lines if line.startswith("- ") and not line.startswith("- ...")]
    waited = [t for t in ranked_trials(record) if t.get("schedule")]
    assert [line[2:].split(": ")[0] for line in listed] == [setting_label(t, record) for t in waited[:20]]
    stopped = sum(t["status"] == "stopped early" for t in waited)
    (more,) = [line for line in lines if line.startswith("- ...")]
    assert more.startswith(f"- ... and {len(waited) - 20} more trials (above: the 20 best by val_acc). Stopped, of all {len(waited)}: ")
    assert sum(int(part.split(" at epoch")[0]) for part in more.split("Stopped, of all")[1].split(": ", 1)[1].split(";")[0].split(", ")) == stopped
    small = synthetic_record(5, scheduler="promotion")
    assert len([line for line in promotion_schedule(small).splitlines() if line.startswith("- ")]) == 5  # every trial, as before


def test_losses_that_span_orders_of_magnitude_get_a_log_axis(tmp_path, monkeypatch):
    """linreg's slowest trial starts at a loss of 24 and its good ones sit at 1e-4 from epoch 2: on a
    linear axis every good trial was one flat line at zero. Losses within 100x keep a linear axis."""
    import matplotlib.pyplot as plt

    from reports import figures

    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)

    def scales(low: float) -> list[str]:
        record = {**synthetic_record(3, epochs=3), "lab": "linreg", "metric": "val_loss", "mode": "min",
                  "metrics": ["train_loss", "val_loss"]}
        for i, trial in enumerate(record["trials"]):
            trial.update(status="completed", best_epoch=3, history={
                "training_iteration": [1, 2, 3],
                "val_loss": [12.0, 3.5, 1.0] if i == 0 else [2 * low, low, low],
                "train_loss": [24.0, 7.0, 2.0] if i == 0 else [3.5, low, low]})
        record["best"] = {**record["best"], "trial_id": record["trials"][1]["trial_id"]}
        drawn.clear()
        figures.best_run_curves(record, tmp_path / "best.png")
        figures.loss_curves(record, tmp_path / "loss.png")
        return [drawn[0].axes[0].get_yscale(), drawn[1].axes[0].get_yscale(),
                figures.all_trials_figure(record).axes[0].get_yscale()]

    assert scales(1e-4) == ["log", "log", "log"]
    assert scales(0.5) == ["linear", "linear", "linear"]


def test_a_one_epoch_search_draws_its_epoch_as_one_tick(tmp_path, monkeypatch):
    """A one-epoch search (lab 2's quick stem section): the x-axis showed 0.95-1.05 in fractions of an epoch,
    and its points, with no line through them, at the size of a line's markers."""
    import matplotlib.pyplot as plt

    from reports import figures

    record = {**synthetic_record(3, epochs=1), "rungs": []}  # ASHA has no rung within one epoch
    ax = figures.all_trials_figure(record).axes[0]
    assert list(ax.get_xticks()) == [1] and ax.get_xlim() == (0.0, 2.0)
    assert all(line.get_markersize() == 8 for line in ax.get_lines() if len(line.get_xdata()) == 1 and line.get_label()[0] != "_")
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    figures.best_run_curves(record, tmp_path / "best.png")
    curves = [line for ax in drawn[0].axes for line in ax.get_lines() if line.get_label().split("_")[-1] in ("loss", "acc")]
    assert curves and {line.get_markersize() for line in curves} == {8}
    assert all(list(ax.get_xticks()) == [1] for ax in drawn[0].axes if ax.get_visible())


def test_shorter_trials_are_drawn_over_longer_ones():
    """Lab 5's epochs search trains one curve for 10, 30, 50 and 70 epochs: drawn last, the 70 hid the others."""
    from reports import figures

    record = synthetic_record(12, epochs=10)
    ax = figures.all_trials_figure(record).axes[0]
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_") and len(line.get_xdata()) > 0]
    assert len({len(line.get_xdata()) for line in lines}) > 2  # stopped at different rungs
    for short in lines:
        for long in lines:
            if len(short.get_xdata()) < len(long.get_xdata()):
                assert short.get_zorder() > long.get_zorder(), (short.get_label(), long.get_label())


def test_a_curve_that_lies_on_another_is_dashed_and_says_on_which(tmp_path):
    """Lab 1's faithful `loss=nll` trains what cross-entropy trains: drawn last, its curve hid the other one
    whole. A curve on one drawn before (the same epochs, within 0.2 % of the axis) is dashed over it, and its
    legend entry names the one beneath; a curve that differs, or covers only the first epochs, is drawn as before."""
    import matplotlib.pyplot as plt

    from reports import figures
    from reports.table import setting_label

    record = synthetic_record(5, epochs=4)
    curves = [[0.90, 0.94, 0.95, 0.96], [0.80, 0.85, 0.88, 0.90], [0.90, 0.94, 0.95, 0.96],
              [0.80, 0.85, 0.88, 0.9001], [0.90, 0.94]]
    for trial, values in zip(record["trials"], curves):
        trial.update(status="completed", history={"training_iteration": list(range(1, len(values) + 1)), "val_acc": values})
    fig = figures.all_trials_figure(record)
    try:
        labels = [setting_label(t, record) for t in record["trials"]]
        lines = {line.get_label(): line for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}
        assert list(lines) == [labels[0], labels[1], f"{labels[2]} (dashed: on {labels[0]})",
                               f"{labels[3]} (dashed: on {labels[1]})", labels[4]]
        dashed = [label for label, line in lines.items() if line.get_linestyle() != "-"]
        assert dashed == [f"{labels[2]} (dashed: on {labels[0]})", f"{labels[3]} (dashed: on {labels[1]})"]
        assert lines[dashed[0]].get_zorder() > lines[labels[0]].get_zorder()
        legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        assert legend[2] == dashed[0]
        figures._save(fig, tmp_path / "coinciding.png")
    finally:
        plt.close(fig)
    # Heights as the axis shows them: linreg's losses, 24 down to 1e-4, go on a log axis, where 1e-4 and 3e-4
    # lie far apart although both are within 0.2 % of 24 from zero.
    record = {**synthetic_record(3, epochs=3), "lab": "linreg", "metric": "val_loss", "mode": "min",
              "metrics": ["train_loss", "val_loss"]}
    for trial, values in zip(record["trials"], ([24.0, 3.0, 1.0], [2e-4, 1e-4, 1e-4], [6e-4, 3e-4, 3e-4])):
        trial.update(status="completed", history={"training_iteration": [1, 2, 3], "val_loss": values})
    fig = figures.all_trials_figure(record)
    try:
        assert fig.axes[0].get_yscale() == "log"
        assert not any("dashed" in line.get_label() or line.get_linestyle() != "-" for line in fig.axes[0].get_lines()
                       if not line.get_label().startswith("_"))
    finally:
        plt.close(fig)


def test_a_vae_search_of_the_labs_loss_and_the_elbo_draws_each_on_its_own_axis(tmp_path, monkeypatch):
    """vae --search model compares the lab's loss (MSE per pixel + KL) with the corrected -ELBO (nats per image):
    drawn on one axis labelled as the ELBO, the faithful trials' numbers were read in the wrong unit. Each
    kind of loss gets its panel, labelled with what the lab says it measures (labspec.hparams.vae_loss_unit)."""
    import matplotlib.pyplot as plt

    from reports import figures
    from reports.table import setting_label
    from labspec.registry import get_lab

    record = {**synthetic_record(4, epochs=3), "lab": "vae", "metric": "val_mse", "mode": "min",
              "metrics": ["train_loss", "val_loss", "val_mse"]}
    for i, trial in enumerate(record["trials"]):
        faithful = i % 2 == 0
        trial["config"] = {**trial["config"], "faithful": faithful}
        trial.update(status="completed", best_epoch=3, history={
            "training_iteration": [1, 2, 3],
            "train_loss": [31.0, 29.0, 28.0] if faithful else [130.0, 110.0, 104.0],
            "val_loss": [30.0, 28.5, 28.0] if faithful else [125.0, 108.0, 103.0]})
    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    assert figures.loss_curves(record, tmp_path / "loss.png").is_file()
    axes = drawn[0].axes
    units = [get_lab("vae").loss_unit_of({"faithful": True}), get_lab("vae").loss_unit_of({"faithful": False})]
    assert units == ["the lab's loss: MSE per pixel + KL per image", "-ELBO per image (nats)"]
    assert [" ".join(ax.get_ylabel().split()) for ax in axes] == units
    for ax, members in zip(axes, (record["trials"][0::2], record["trials"][1::2])):
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == [f"{setting_label(t, record)}: {split}" for t in members for split in ("val", "train")]
    assert "one panel per kind of loss" in " ".join(axes[0].get_title().split()) and axes[1].get_xlabel() == "epoch"
    seq2seq = {**record, "lab": "seq2seq"}  # one unit for every trial: one panel, as before
    drawn.clear()
    figures.loss_curves(seq2seq, tmp_path / "one.png")
    assert len(drawn[0].axes) == 1 and drawn[0].axes[0].get_ylabel() == "loss per target word"
