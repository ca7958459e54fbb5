"""The combined report of a reproduce: every section's generated answer, tables, lab text and figures
in one report.md and one self-contained report.html, with each section's CSV and PNGs beside them.

The answer that opens a section is written from its results (`answer`), never by hand: the best
setting and its metric (mean ± std over seeds with --repeats), how far the others are behind or,
for a lab's table, the best of each sweep, and the lab's published figure where it applies. The
rest comes from the section's own search report (`_own_report`).
"""
from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

from reports.record import Status, Summary
from tune_lab.reproduce.plan import Plan
from tune_lab.paths import REPRODUCE_RUN
from tune_lab.results import read_json


FIGURE_LINE = re.compile(r"^!\[(?P<caption>.*)\]\((?P<name>[^)]+\.png)\)$", re.MULTILINE)


def _value(metric: str, value: float | None) -> str:
    """A metric as every report writes it (reports.units: its unit and decimals)."""
    from reports import units

    return units.text(metric, value)


def answer(record: Summary, accept: dict[str, float] | None = None) -> str:
    """One paragraph answering the section's question from its results: the best setting, its metric
    (mean ± std over seeds where there are several), how far the others are behind, the lab's figure,
    and whether the best trial meets the plan's `accept` bounds (lab 1: w and b within 0.05)."""
    from reports.published import LAB_CONDITIONS
    from reports.table import LAB_COLUMN, comparison_rows, header, setting_label, sweep_verdict
    from reports import units
    from reports.facts import behind as behind_words, noise_words
    from reports.seeds import repeated, verdict_text

    metric, best = record["metric"], record.get("best")
    scored = [t for t in record["trials"] if (t.get("best") or {}).get(metric) is not None]
    if not best or not scored:
        return f"No trial of this search produced a result ({len(record['trials'])} trials)."
    name = header(metric).removesuffix(" %")  # the value carries its unit
    test = metric.replace("val_", "test_", 1) if metric.startswith("val_") else None
    seeded = repeated(record)

    def score(trial: dict[str, Any], m: str) -> str:
        stats = (trial.get("seed_stats") or {}).get(m) if seeded else None
        if stats and stats.get("std") is not None:
            unit = "%" if units.is_percent(m) else ""
            return (f"{units.text(m, stats['mean'], unit=False)} ± {units.text(m, stats['std'], unit=False)}{unit} "
                    f"over {stats['n']} seeds")
        return _value(m, (trial.get("best") or {}).get(m))

    # a search of variants alone (one one-value sweep, e.g. faithful / corrected) is named by its variants
    by_variant = record.get("variants") and all(len(v) == 1 for v in (record.get("sweeps") or {}).values())

    def setting(trial: dict[str, Any]) -> str:
        return trial["setting"].get("variant") if by_variant else setting_label(trial, record)

    winner = next(t for t in record["trials"] if t["trial_id"] == best["trial_id"])
    label = setting(winner)
    text = [f"Best: **{label}**, {name} {score(winner, metric)}"
            + (f" (test: {score(winner, test)})" if test and test in record["metrics"] else "")
            + f", at epoch {best['epoch']} of {winner['epochs_run']}; {len(scored)} settings compared on {metric} "
            f"({'higher' if record['mode'] == 'max' else 'lower'} is better) on {record['dataset']}."]
    others = sorted((t for t in scored if t["trial_id"] != best["trial_id"]),
                    key=lambda t: t["best"][metric], reverse=record["mode"] == "max")
    if record.get("sweeps") and not by_variant:  # a lab's table: the best of each sweep says more than a ranking
        text.append(_sweep_answer(record, scored))
    elif others:
        behind = []
        for t in others[:4]:
            verdict = verdict_text(t.get("verdict")) if seeded else ""
            gap = t["best"][metric] - best["metrics"][metric]
            notes = [_value(metric, t["best"][metric]), t["status"] if t["status"] == Status.STOPPED_EARLY else "",
                     noise_words(record, gap), verdict]  # the seed spread's words, as the table's note has them
            behind.append(f"{setting(t)} {behind_words(record, gap)} ({', '.join(n for n in notes if n)})")
        more = f", and {len(others) - 4} more" if len(others) > 4 else ""
        text.append("The others: " + "; ".join(behind) + more + ".")
    if record["lab"] not in LAB_CONDITIONS:  # the lab published no figure to compare with
        pass
    elif record.get("sweeps"):
        verdict = sweep_verdict(record)
        text.append(("Against the lab's published table: " + verdict.replace("\n", "; ") + ".") if verdict else
                    "The lab's published figures are shown only beside a run of its own experiment (its dataset, "
                    "every training image, its settings); this run is not one.")
    else:
        row = next(r for r in comparison_rows(record) if r["best"] == "*")
        if row.get(LAB_COLUMN) not in (None, ""):
            text.append(f"The lab published {row[LAB_COLUMN]}% test accuracy for this setting.")
    if accept:
        text.append(_acceptance(record, winner, accept))
    if record.get("subset"):
        text.append(f"Trained on {record['subset']:,} training samples (--subset), not the whole split.")
    if not seeded and others:  # one seed: which of those gaps the seed alone could make, and --repeats
        text.append("One seed per setting (the note under the table says which gaps the seed could make): "
                    "--repeats 3 gives error bars.")
    return " ".join(text)


def _acceptance(record: Summary, winner: dict[str, Any], accept: dict[str, float]) -> str:
    """'Acceptance: w_error 0.0005 (at most 0.05) met; ... : met.' for the best trial, at its selected epoch."""
    from labspec.registry import LABS

    parts, ok = [], True
    for metric, bound in accept.items():
        value = (winner.get("best") or {}).get(metric)
        lower = LABS[record["lab"]].metrics[metric] == "min"
        met = value is not None and (value <= bound if lower else value >= bound)
        ok = ok and met
        parts.append(f"{metric} {_value(metric, value)} ({'at most' if lower else 'at least'} {bound:g}) "
                     f"{'met' if met else 'NOT met'}")
    return f"Acceptance: {'; '.join(parts)}: {'all met' if ok else 'not all met'}."


def _sweep_answer(record: Summary, scored: list[dict[str, Any]]) -> str:
    """'Best of each sweep (by val acc): corrected: epochs=20 (90.74%), ...; faithful: ...': for each variant
    and swept parameter, the best of the trials that change only that parameter from the base setting."""
    metric, base = record["metric"], record["fixed"]
    pick = max if record["mode"] == "max" else min
    parts = []
    for variant in record.get("variants") or {"": {}}:
        best_of = []
        for param, values in record["sweeps"].items():
            row = [t for t in scored if t["config"].get("variant", "") == variant and t["config"].get(param) in values
                   and all(t["config"].get(q) == base[q] for q in record["sweeps"] if q != param)]
            if len(row) > 1:
                top = pick(row, key=lambda t: t["best"][metric])
                best_of.append(f"{param}={top['config'][param]} ({_value(metric, top['best'][metric])})")
        if best_of:
            parts.append(f"{variant + ': ' if variant else ''}{', '.join(best_of)}")
    from reports.table import header

    return f"Best of each sweep (by {header(metric).removesuffix(' %')}): " + "; ".join(parts) + "." if parts else ""


def _own_report(section_dir: Path, tables: list[str]) -> tuple[list[tuple[str, Path]], str]:
    """What the section's own report adds to its tables: (caption, PNG) of every figure, in its order,
    and the lab's own text (e.g. seq2seq's sample translations) as Markdown under ### headings."""
    report_md = section_dir / "report" / "report.md"
    if not report_md.is_file():
        return [], ""
    text = report_md.read_text()
    found = [(m["caption"], section_dir / "report" / m["name"]) for m in FIGURE_LINE.finditer(text)]
    figures = [(caption, path) for caption, path in found if path.is_file()]
    known = set(tables) | {caption for caption, _ in found}
    extra = []
    for part in re.split(r"(?m)^## ", text)[1:]:  # each '## ' section: a table, a figure, or the lab's text
        heading, _, body = part.partition("\n")
        if heading.strip() not in known:
            extra.append(f"### {heading.strip()}\n{body.rstrip()}")
    return figures, "\n\n".join(extra)


def write_combined_report(plan: Plan, folder: Path) -> Path:
    """`folder`/report: report.md and a self-contained report.html with every section's answer, tables
    and figures, plus each section's table CSV and PNGs (named SECTION-FILE)."""
    from reports.build import TEMPLATES, markdown_html
    from reports.facts import run_facts
    from tune_lab.reproduce.plan import RETRAIN_WHY, retrained
    from reports.table import report_tables

    run = read_json(folder / REPRODUCE_RUN) or {}
    out = folder / "report"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sections = []
    again = retrained(plan)  # configurations an earlier section trained too, and why they are not reused
    for section in plan.sections:
        where = folder / section.key
        record = read_json(where / "summary.json")
        entry: dict[str, Any] = {"key": section.key, "title": section.title, "question": section.question,
                                 "search": f"{section.lab} --search {section.search.name}", "figures": [],
                                 "tables": [], "answer": "", "facts": "", "own_report": "", "lab_text": "", "lab_html": "",
                                 "missing": f"left out of the quick run: {section.skipped}" if section.skipped else "",
                                 "retrained": (f"Trained again here: {', '.join(f'{a} (= {b})' for a, b in again[section.key])}; "
                                               f"{RETRAIN_WHY}." if section.key in again else "")}
        if not section.skipped and not (record or {}).get("complete"):
            entry["missing"] = "not run to its end yet: rerun the same command to finish it"
        if record and not entry["missing"]:
            entry["answer"] = answer(record, section.accept)
            entry["tables"] = report_tables(record)
            wall = (run.get("sections") or {}).get(section.key, {}).get("wall_s")
            took = f"{wall:.0f} s" if wall else ""
            ran = "; ".join(f"{name}: {value}" for name, value in run_facts(record))  # data, --set, seeds, changes
            entry["facts"] = (f"`tune-lab {section.lab} --search {section.search.name}`, "
                              f"{len(record['trials'])} trials, selected on {record['metric']} ({record['mode']})"
                              f"{'; ' + took if took else ''}. {ran}")
            entry["own_report"] = f"../{section.key}/report/report.html"
            csv = where / "report" / "table.csv"
            if csv.is_file():
                shutil.copy(csv, out / f"{section.key}-table.csv")
            figures, entry["lab_text"] = _own_report(where, [heading for heading, _, _ in entry["tables"]])
            entry["lab_html"] = markdown_html(entry["lab_text"])
            for caption, png in figures:
                name = f"{section.key}-{png.name}"
                shutil.copy(png, out / name)
                entry["figures"].append((caption, name, base64.b64encode(png.read_bytes()).decode("ascii")))
        sections.append(entry)
    context = {
        "title": plan.title, "question": plan.question, "quick": plan.quick, "sections": sections,
        "plan": str(plan.path), "started": run.get("started", ""), "folder": str(folder),
        "wall": sum(s.get("wall_s", 0.0) for s in (run.get("sections") or {}).values()),
    }
    for name in ("report.md", "report.html"):
        (out / name).write_text(TEMPLATES.get_template(f"reproduce.{name.split('.')[1]}.j2").render(context))
    return out
