"""report.html renders in headless Chromium with its plots (skips only when chromium is absent)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from czbenchmarks.report import write_report
from test_report import PLAN, SCHEDULED, doc

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
    pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); report rendering not checked")


def render(html: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", *extra, html.as_uri()],
        capture_output=True, text=True, timeout=180,
    )


def screenshot(html: Path, png: Path, tmp: Path, size: str = "1280,2400") -> None:
    """Screenshot of a page (headless Chromium)."""
    run = render(html, tmp, f"--screenshot={png}", f"--window-size={size}")
    assert png.exists() and png.stat().st_size > 10_000, run.stderr[-2000:]


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    files = []
    for i, cell in enumerate(SCHEDULED):
        files.append(tmp / f"{i}.json")
        files[-1].write_text(json.dumps(doc(cell["dataset"], cell["model"], cell["variant"], cell["task"], 0.1 * i)))
    plan = tmp / "plan.jsonl"
    plan.write_text("\n".join([json.dumps({"kind": "dataset", **d}) for d in PLAN["datasets"]]
                              + [json.dumps({"kind": "model", **m}) for m in PLAN["models"]]
                              + [json.dumps({"kind": "cell", **c}) for c in PLAN["cells"]]))
    write_report(files, [], tmp / "out", plan_file=plan)
    return tmp / "out" / "report.html"


def test_report_renders_with_its_plots(report_html, tmp_path):
    run = render(report_html, tmp_path, "--dump-dom", "--virtual-time-budget=5000")
    dom = run.stdout
    assert "czbenchmarks-nf benchmark report" in dom, run.stderr[-2000:]
    images = re.findall(r'<img class="plot"[^>]*src="data:image/png;base64,', dom)
    assert len(images) >= 3
    assert "Complete: all 6 expected" in dom and "(1 not applicable)" in dom
    png = tmp_path / "shot.png"
    screenshot(report_html, png, tmp_path)
    # A rendered page with plots is far from blank: many distinct colours.
    from PIL import Image

    colours = Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50
