"""A finished search as a notebook wants it: `Result`, what `tune_lab.search` and `tune_lab.load` return.

One object over the search's typed record (reports.record.Summary: summary.json, whether read from
the results folder or rebuilt from MLflow), so that a search just run and the same search loaded a
week later give the same tables.
"""
from __future__ import annotations

import base64
import functools
import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reports.record import Summary, typed
from labspec.files import is_remote

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Best:
    """The trial the search picked, at its selected epoch (the record's BestPick, with attributes)."""

    trial_id: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    epoch: int
    checkpoint: str | None  # the checkpoint folder (None once pruned, or read from MLflow alone)
    mlflow_run_id: str | None


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    md: Path


class Result:
    """One search: its typed table, its curves, the best trial, its report and where it lives."""

    def __init__(self, record: dict[str, Any], folder: str, *, interrupted: bool = False) -> None:
        self.record: Summary = typed(record)  # each trial's status a reports.record.Status
        self.folder, self.interrupted = folder, interrupted

    @property
    def experiment(self) -> str:
        return str(self.record.get("experiment") or Path(self.folder).name)

    @property
    def lab(self) -> str:
        return str(self.record.get("lab"))

    @property
    def metric(self) -> str:
        return self.record["metric"]

    @functools.cached_property
    def table(self) -> pd.DataFrame:
        """One row per trial (a setting, with its seeds, under --repeats): every hyperparameter and
        metric a typed column (see reports.frame)."""
        from reports.frame import trials_frame

        return trials_frame(self.record)

    def overview(self) -> pd.DataFrame:
        """The table's columns the command line shows: what the search varied, the lab's headline
        metrics (its accuracies, else every metric), the seeds' statistics, epochs, status, best."""
        from reports.frame import metric_column
        from reports.table import shown_metrics

        table = self.table
        searched = metric_column(self.metric)
        metrics = []
        for column in map(metric_column, shown_metrics(self.record)):
            spread = [f"{column}_mean", f"{column}_ci_low", f"{column}_ci_high"]  # --repeats: the seeds' mean and CI
            metrics += spread if column == searched and spread[0] in table else [column]
        wanted = ["trial_id", *self.record.get("varied", []), *metrics, "verdict", "p", "epochs_run", "best_epoch",
                  "status", "best"]
        return table[[c for c in dict.fromkeys(wanted) if c in table.columns]]

    @functools.cached_property
    def curves(self) -> pd.DataFrame:
        """Long form: one row per trial and epoch, every metric a column."""
        from reports.frame import curves_frame

        return curves_frame(self.record)

    @property
    def best(self) -> Best | None:
        best = self.record.get("best")
        if not best:
            return None
        return Best(trial_id=best["trial_id"], config=dict(best["config"]), metrics=dict(best["metrics"]),
                    epoch=int(best["epoch"]), checkpoint=best.get("checkpoint"), mlflow_run_id=best.get("mlflow_run_id"))

    @property
    def report(self) -> ReportFiles | None:
        """report.html and report.md, where the search wrote them (None before a report exists)."""
        folder = Path(self.folder) / "report"
        if is_remote(self.folder) or not (folder / "report.html").is_file():
            return None
        return ReportFiles(html=folder / "report.html", md=folder / "report.md")

    def __repr__(self) -> str:
        state = "interrupted" if self.interrupted else f"{len(self.record.get('trials', []))} trials"
        best = self.best
        pick = f", best {best.trial_id} {self.metric}={best.metrics.get(self.metric)!r}" if best else ""
        return f"<tune_lab.Result {self.experiment!r}: {self.lab}, {state}{pick}>"

    def _repr_html_(self) -> str:
        """The notebook view: a heading, the overview table, the best trial's curves."""
        from reports import units

        heading = html.escape(f"{self.experiment}: lab {self.lab}, searched on {self.metric}")
        parts = [f"<h4>{heading}</h4>"]
        if self.interrupted:
            parts.append(f"<p>Interrupted: continue with <code>tune_lab.resume({self.folder!r})</code></p>")
        overview = self.overview()  # each metric with the decimals every report gives it (reports.units)
        formatters = {c: (lambda v, c=c: "" if v != v else units.cell(c, v)) for c in overview.columns
                      if overview[c].dtype.kind == "f"}
        parts.append(overview.to_html(index=False, na_rep="", formatters=formatters))
        parts.append("<p><code>.table</code> has every hyperparameter and metric; <code>.curves</code> every epoch.</p>")
        best = self.best
        if best is not None:
            parts.append(html.escape(f"Best trial {best.trial_id} (epoch {best.epoch})"))
        figure = Path(self.folder) / "report" / "best_curves.png"
        if not is_remote(self.folder) and figure.is_file():
            data = base64.b64encode(figure.read_bytes()).decode()
            parts.append(f'<div><img alt="best trial curves" style="max-width:640px" src="data:image/png;base64,{data}"></div>')
        return "\n".join(parts)
