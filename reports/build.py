"""Write a search's report folder: report.md, a self-contained report.html, table.csv, PNGs.

Both reports are rendered from templates/ with the same facts, tables and figures."""
from __future__ import annotations

import base64
from pathlib import Path

import jinja2
import markupsafe

from reports import figures, units
from reports.facts import run_facts
from reports.frame import trials_frame
from reports.record import Status, Summary
from reports.seeds import METHOD, repeated
from reports.table import format_best, report_tables, text_table

TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"), autoescape=jinja2.select_autoescape(["html.j2"]),
                               trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
TEMPLATES.filters["text_table"] = text_table
# a cell as report.md's table (tabulate) prints it: each column's decimals (reports.units)
TEMPLATES.filters["cell"] = lambda value, column="": units.cell(column, value)


def _title(record: Summary) -> str:
    subset = f", {record['subset']:,} of its training samples (--subset)" if record.get("subset") else ""
    return f"tune-lab report: {record['lab']} / {record['search']} on {record['dataset']}{subset}"


def _marks_caption(scheduler: str | None) -> str:
    """What the all-trials figure's marks mean, for the scheduler that made them (FIFO stops nobody)."""
    return {"promotion": " (x: stopped at a rung, ^: paused there and promoted)",
            "asha": f" (x: {Status.STOPPED_EARLY} by ASHA)"}.get(scheduler or "", "")


def standard_figures(record: Summary, out_dir: Path) -> list[tuple[str, str]]:
    """(caption, file name) of every standard figure this search has data for."""
    wanted = [
        ("Best trial: train / val / test per epoch", "best_curves.png", figures.best_run_curves),
        (f"Every trial's {record['metric']} per epoch" + _marks_caption(record.get("scheduler")), "all_trials.png",
         figures.all_trials_curves),
        ("Train and validation loss of every trial", "loss_curves.png", figures.loss_curves),
    ]
    if record.get("algorithm") in ("random", "optuna"):
        wanted += [
            (f"Each searched parameter against {record['metric']}", "params.png", figures.param_scatter),
            ("Parameter importance", "importance.png", figures.param_importance),
        ]
    made = []
    for caption, name, draw in wanted:
        if draw(record, out_dir / name) is not None:
            made.append((caption, name))
    return made


def markdown_html(text: str) -> markupsafe.Markup:
    """A lab's own Markdown (headings, code blocks, pipe tables such as linreg's recovered w and b) as HTML,
    by markdown-it (CommonMark and GitHub's tables); raw HTML in it is shown as text, never as markup."""
    from markdown_it import MarkdownIt

    return markupsafe.Markup(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


def build_report(record: Summary, out_dir: Path, extra_figures: list[tuple[str, str]] = (),
                 extra_text: str = "") -> Path:
    """Write the report of `record` into `out_dir`; `extra_figures` are lab PNGs already there,
    `extra_text` the lab's own Markdown (headings and code blocks), shown after the comparison."""
    out_dir.mkdir(parents=True, exist_ok=True)
    trials_frame(record).to_csv(out_dir / "table.csv", index=False)  # typed, a column per setting (reports/frame.py)
    shown = standard_figures(record, out_dir) + list(extra_figures)
    extra_text = "\n\n".join(part for part in (extra_text, figures.promotion_schedule(record)) if part)

    facts = [
        ("Question", record.get("description") or record["search"]),
        *run_facts(record),  # data and split sizes, --subset, --set, seeds, changes from the lab as written
        ("Selected by", f"{record['metric']} ({record['mode']}) on the validation split; test is reported, never used to choose"),
        ("Search", f"{record.get('algorithm')}, scheduler {record.get('scheduler')}, {len(record['trials'])} trials"),
        ("Fixed", ", ".join(f"{k}={v}" for k, v in (record.get("fixed") or {}).items()) or "-"),
        *([("Error bars", METHOD)] if repeated(record) else []),
        ("Read from", record.get("source", "the finished search")),
    ]
    context = {
        "title": _title(record), "facts": facts, "tables": report_tables(record), "best": format_best(record),
        "lab_text": extra_text, "lab_html": markdown_html(extra_text),
        "figures": [(caption, name, base64.b64encode((out_dir / name).read_bytes()).decode("ascii")) for caption, name in shown],
    }
    for name in ("report.md", "report.html"):
        (out_dir / name).write_text(TEMPLATES.get_template(f"{name}.j2").render(context))
    return out_dir
