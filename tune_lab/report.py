"""Build a search's report: the standard tables and curves, plus the lab's own figures."""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from reports.build import build_report
from reports.record import Summary
from labspec.files import filesystem, is_remote
from labspec.registry import get_lab


class ReportWouldLoseSections(RuntimeError):
    """A rebuild could not make a section the existing report has: the old report is kept."""


def lab_extras(record: Summary, out_dir: Path, data_dir: str | None) -> tuple[list[tuple[str, str]], str, list[str]]:
    """The lab's own figures and text on the best checkpoint: ([(caption, png)], Markdown, problems).

    From the lab's `report_figures` and `report_text` hooks (labspec.registry.LabModule); the
    data is loaded once for both, and only if the lab has one. Each is a bonus: if it fails, the
    report is still written, without it, and `problems` says why.
    """
    checkpoint = (record.get("best") or {}).get("checkpoint")
    module = get_lab(record["lab"]).load()
    draw, write = module.report_figures, module.report_text
    if (draw is None and write is None) or not checkpoint or not Path(checkpoint).is_dir():
        return [], "", []
    try:
        data = module.load_data(record["dataset"], data_dir)
    except Exception as exc:
        return [], "", [f"the lab's figures need its data, which could not be loaded ({_one_line(exc)})"]
    figures, text, problems = [], "", []
    if draw is not None:
        try:
            figures = list(draw(checkpoint, data, out_dir))
        except Exception as exc:
            problems.append(f"the lab's figures could not be drawn ({_one_line(exc)})")
    if write is not None:
        try:
            text = write(checkpoint, data)
        except Exception as exc:
            problems.append(f"the lab's text could not be written ({_one_line(exc)})")
    return figures, text, problems


def _one_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


def _sections(report_md: str | None) -> list[str]:
    """The '## ' headings of a report.md: the sections a rebuild must not lose."""
    return [line[3:].strip() for line in (report_md or "").splitlines() if line.startswith("## ")]


def _existing_report_md(folder: str) -> str | None:
    if is_remote(folder):
        fs, base = filesystem(folder)
        try:
            with fs.open_input_stream(f"{base}/report/report.md") as stream:
                return stream.read().decode()
        except (FileNotFoundError, OSError):
            return None
    path = Path(folder) / "report" / "report.md"
    return path.read_text() if path.is_file() else None


def write_report(record: Summary, folder: str, data_dir: str | None = None) -> Path:
    """Write `folder`/report; returns the local folder it was built in.

    The report is built aside and replaces the old one only if it has every section the old one
    has: a rebuild without the lab's data (its figures, seq2seq's sample translations) must not
    overwrite a richer report with a poorer one (ReportWouldLoseSections, old report untouched).
    For a results root at a URI (s3://, file://) the report is built in a local temporary
    folder and copied there with the filesystem layer Ray's own storage uses.
    """
    remote = is_remote(folder)
    if not remote:
        Path(folder).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".report-", dir=None if remote else folder))
    try:
        extra, text, problems = lab_extras(record, work, data_dir)
        build_report(record, work, extra, text)
        lost = [s for s in _sections(_existing_report_md(folder)) if s not in _sections((work / "report.md").read_text())]
        if lost:
            raise ReportWouldLoseSections(
                f"report: not rebuilt, it would lose {', '.join(repr(s) for s in lost)}: {'; '.join(problems) or 'not made'}"
                f"; the report in {folder}/report is unchanged")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    for problem in problems:
        print(f"tune-lab: {problem}", file=sys.stderr)
    if remote:
        import pyarrow.fs

        fs, base = filesystem(folder)
        fs.create_dir(f"{base}/report", recursive=True)
        pyarrow.fs.copy_files(str(work), f"{base}/report", destination_filesystem=fs)
        return work
    out_dir = Path(folder) / "report"
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a rebuilt report never keeps a stale figure
    work.rename(out_dir)
    return out_dir


def log_to_mlflow(record: Summary, report_dir: Path, with_checkpoint: bool = True) -> None:
    """The report (and the best trial's checkpoint) as artifacts of the search's parent run."""
    from mlflow.tracking import MlflowClient

    tracking = record["mlflow"]
    client = MlflowClient(tracking_uri=tracking["tracking_uri"])
    client.log_artifacts(tracking["parent_run_id"], str(report_dir), "report")
    best = record.get("best") or {}
    if with_checkpoint and best.get("checkpoint") and Path(best["checkpoint"]).is_dir():
        client.log_artifacts(tracking["parent_run_id"], best["checkpoint"], "best_checkpoint")
