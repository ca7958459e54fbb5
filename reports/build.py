"""Write a search's report folder: report.md, a self-contained report.html, table.csv, PNGs."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

from reports import figures
from reports.seeds import METHOD, repeated
from reports.table import comparison_rows, format_best, format_table, lab_note

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; } code { background: #f5f5f5; padding: 1px 4px; }
figure { margin: 1.5em 0; } pre { white-space: pre-wrap; } figcaption { color: #555; font-size: 14px; }
"""


def _title(record: dict[str, Any]) -> str:
    return f"tune-lab report: {record['lab']} / {record['search']} on {record['dataset']}"


def standard_figures(record: dict[str, Any], out_dir: Path) -> list[tuple[str, str]]:
    """(caption, file name) of every standard figure this search has data for."""
    wanted = [
        ("Best trial: train / val / test per epoch", "best_curves.png", figures.best_run_curves),
        (f"Every trial's {record['metric']} per epoch " + ("(x: stopped at a rung, ^: paused there and promoted)"
         if record.get("scheduler") == "promotion" else "(x: stopped early by ASHA)"), "all_trials.png",
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


def _markdown_html(text: str) -> str:
    """The little Markdown a lab's text uses: '## ' headings, ``` blocks, paragraphs."""
    parts, block = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if block is None:
                block = []
            else:
                parts.append("<pre>" + html.escape("\n".join(block)) + "</pre>")
                block = None
        elif block is not None:
            block.append(line)
        elif line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")))
            parts.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    if block is not None:
        parts.append("<pre>" + html.escape("\n".join(block)) + "</pre>")
    return "\n".join(parts)


def build_report(record: dict[str, Any], out_dir: Path, extra_figures: list[tuple[str, str]] = (),
                 extra_text: str = "") -> Path:
    """Write the report of `record` into `out_dir`; `extra_figures` are lab PNGs already there,
    `extra_text` the lab's own Markdown (headings and code blocks), shown after the comparison."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(comparison_rows(record)).to_csv(out_dir / "table.csv", index=False)
    shown = standard_figures(record, out_dir) + list(extra_figures)
    extra_text = "\n\n".join(part for part in (extra_text, figures.promotion_schedule(record)) if part)

    facts = [
        ("Question", record.get("description") or record["search"]),
        ("Dataset", record["dataset"]),
        ("Selected by", f"{record['metric']} ({record['mode']}) on the validation split; test is reported, never used to choose"),
        ("Search", f"{record.get('algorithm')}, scheduler {record.get('scheduler')}, {len(record['trials'])} trials"),
        ("Fixed", ", ".join(f"{k}={v}" for k, v in (record.get("fixed") or {}).items()) or "-"),
        *([("Seeds", f"{record['repeats']} per configuration (--seed, --seed+1, ...); {METHOD}")] if repeated(record) else []),
        ("Read from", record.get("source", "the finished search")),
    ]
    md = [f"# {_title(record)}", ""]
    md += [f"- **{k}**: {v}" for k, v in facts]
    md += ["", "## Comparison", "", format_table(record), "", "```", format_best(record), "```", ""]
    if extra_text:
        md += [extra_text, ""]
    for caption, name in shown:
        md += [f"## {caption}", "", f"![{caption}]({name})", ""]
    (out_dir / "report.md").write_text("\n".join(md))

    rows = comparison_rows(record)
    note = lab_note(record, rows)  # what the lab's column means, beneath the table as in report.md
    table_html = pd.DataFrame(rows).to_html(index=False, na_rep="", border=0) + (f"<p>{html.escape(note)}</p>" if note else "")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(_title(record))}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(_title(record))}</h1><ul>"]
    parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in facts]
    parts += ["</ul><h2>Comparison</h2>", table_html, f"<pre>{html.escape(format_best(record))}</pre>"]
    if extra_text:
        parts.append(_markdown_html(extra_text))
    for caption, name in shown:
        data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    (out_dir / "report.html").write_text("\n".join(parts))
    return out_dir
