"""Headless Chromium for tests that check what a person would see."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
requires_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (CI installs Debian's package)")


def _run(url: str, *flags: str, budget_ms: int) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--virtual-time-budget={budget_ms}", "--window-size=1400,1000", *flags, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def rendered_dom(url: str, budget_ms: int = 5000) -> str:
    """The DOM after the page's scripts ran, as the browser sees it."""
    done = _run(url, "--dump-dom", budget_ms=budget_ms)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def screenshot(url: str, path: Path, budget_ms: int = 5000) -> Path:
    _run(url, f"--screenshot={path}", budget_ms=budget_ms)
    assert path.is_file() and path.stat().st_size > 10_000, "the screenshot is missing or blank"
    return path
