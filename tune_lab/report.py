"""Build a search's report: the standard tables and curves, plus the lab's own figures."""
from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from reports.build import build_report
from trainables.registry import get_lab


def lab_extras(record: dict[str, Any], out_dir: Path, data_dir: str | None) -> tuple[list[tuple[str, str]], str]:
    """The lab's own figures and text on the best checkpoint: ([(caption, png)], Markdown).

    A lab module may define `report_figures(checkpoint_dir, data, out_dir)` and
    `report_text(checkpoint_dir, data)`; the data is loaded once for both, and only if one
    exists. Each is a bonus: if it fails, the report is still written, without it.
    """
    checkpoint = (record.get("best") or {}).get("checkpoint")
    module = importlib.import_module(get_lab(record["lab"]).module)
    draw, write = getattr(module, "report_figures", None), getattr(module, "report_text", None)
    if (draw is None and write is None) or not checkpoint or not Path(checkpoint).is_dir():
        return [], ""
    try:
        data = module.load_data(record["dataset"], data_dir)
    except Exception as exc:
        print(f"tune-lab: the lab's figures need its data, which could not be loaded ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return [], ""
    figures, text = [], ""
    if draw is not None:
        try:
            figures = list(draw(checkpoint, data, out_dir))
        except Exception as exc:
            print(f"tune-lab: the lab's figures could not be drawn ({type(exc).__name__}: {exc})", file=sys.stderr)
    if write is not None:
        try:
            text = write(checkpoint, data)
        except Exception as exc:
            print(f"tune-lab: the lab's text could not be written ({type(exc).__name__}: {exc})", file=sys.stderr)
    return figures, text


def write_report(record: dict[str, Any], folder: str, data_dir: str | None = None) -> Path:
    """Write `folder`/report; returns the local folder it was built in.

    For a results root at a URI (s3://, file://) the report is built in a local temporary
    folder and copied there with the filesystem layer Ray's own storage uses.
    """
    remote = "://" in folder
    out_dir = Path(tempfile.mkdtemp(prefix="tune-lab-report-")) if remote else Path(folder) / "report"
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a rebuilt report never keeps a stale figure
    out_dir.mkdir(parents=True)
    extra, text = lab_extras(record, out_dir, data_dir)
    build_report(record, out_dir, extra, text)
    if remote:
        import pyarrow.fs

        fs, base = pyarrow.fs.FileSystem.from_uri(folder)
        fs.create_dir(f"{base}/report", recursive=True)
        pyarrow.fs.copy_files(str(out_dir), f"{base}/report", destination_filesystem=fs)
    return out_dir


def log_to_mlflow(record: dict[str, Any], report_dir: Path, with_checkpoint: bool = True) -> None:
    """The report (and the best trial's checkpoint) as artifacts of the search's parent run."""
    from mlflow.tracking import MlflowClient

    tracking = record["mlflow"]
    client = MlflowClient(tracking_uri=tracking["tracking_uri"])
    client.log_artifacts(tracking["parent_run_id"], str(report_dir), "report")
    best = record.get("best") or {}
    if with_checkpoint and best.get("checkpoint") and Path(best["checkpoint"]).is_dir():
        client.log_artifacts(tracking["parent_run_id"], best["checkpoint"], "best_checkpoint")
