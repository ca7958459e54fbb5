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


def markdown_blocks(text: str) -> list[tuple[str, str]]:
    """The little Markdown a lab's text uses, as (tag, text): '## ' headings, ``` blocks (pre), pipe tables
    (table: its rows as escaped HTML, so that the templates' `<table>{{ text }}</table>` shows a table,
    not lines of pipes; linreg's recovered w and b) and paragraphs (p)."""
    blocks, code, table = [], None, []

    def end_table() -> None:
        if table:
            blocks.append(("table", _html_rows(table)))
            table.clear()

    for line in text.splitlines():
        if code is None and line.startswith("|"):
            table.append(line)
            continue
        end_table()
        if line.startswith("```"):
            if code is not None:
                blocks.append(("pre", "\n".join(code)))
            code = [] if code is None else None
        elif code is not None:
            code.append(line)
        elif line.startswith("#"):
            blocks.append((f"h{min(6, len(line) - len(line.lstrip('#')))}", line.lstrip("#").strip()))
        elif line.strip():
            blocks.append(("p", line))
    end_table()
    if code is not None:
        blocks.append(("pre", "\n".join(code)))
    return blocks


def _html_rows(lines: list[str]) -> markupsafe.Markup:
    """A Markdown pipe table's lines as <tr> rows (the first a header; the |---| line dropped), cells escaped."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    rows = [row for row in rows if not all(set(cell) <= set("-: ") and cell for cell in row)]
    html = [f"<tr>{''.join(f'<{tag}>{markupsafe.escape(cell)}</{tag}>' for cell in row)}</tr>"
            for tag, row in (("th" if i == 0 else "td", row) for i, row in enumerate(rows))]
    return markupsafe.Markup("".join(html))


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
        "lab_text": extra_text, "lab_blocks": markdown_blocks(extra_text),
        "figures": [(caption, name, base64.b64encode((out_dir / name).read_bytes()).decode("ascii")) for caption, name in shown],
    }
    for name in ("report.md", "report.html"):
        (out_dir / name).write_text(TEMPLATES.get_template(f"{name}.j2").render(context))
    return out_dir
