"""report.html renders in headless Chromium with its plots, ranking, cost, glossary and per-task sections,
and no table row grows taller than a few lines (skips only when chromium is absent)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from czbenchmarks.report import write_report
from test_report import PLAN, SCHEDULED, doc, metric

#: No table row may be taller than this (long values fold into details/summary).
MAX_ROW_PX = 120
#: Appended to a copy of the page: measures every table row after layout and writes the tallest into the DOM.
MEASURE_ROWS = """<script>
window.addEventListener('load', () => {
  let tallest = 0, text = '';
  for (const tr of document.querySelectorAll('tr')) {
    const h = tr.getBoundingClientRect().height;
    if (h > tallest) { tallest = h; text = tr.innerText.slice(0, 200); }
  }
  const out = document.createElement('pre');
  out.id = 'row-measure';
  out.textContent = JSON.stringify({tallest: tallest, text: text, rows: document.querySelectorAll('tr').length});
  document.body.appendChild(out);
});
</script>"""

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


def seeded(dataset, model, variant, task, i):
    """An EVALUATE document as --seeds 3 writes it: per-seed values, their interval, the mean as value."""
    from czbenchmarks.report_scores import t_interval

    if task == "perturbation":
        metrics = [metric(name, 0.3 + 0.1 * i, condition="MEAN", subset=subset)
                   for name, subset in (("mean_squared_error", "all"), ("pearson_correlation", "top20"), ("jaccard", "top20"))]
    else:
        values = [0.1 * i + d for d in (-0.02, 0.0, 0.02)]
        metrics = [metric("adjusted_rand_index", sum(values) / 3, values, t_interval(values))]
    out = doc(dataset, model, variant, task, metrics=metrics, seeds=[1, 2, 3])
    # Provenance the size real outputs carry: long software lists and checksums must not stretch a row.
    out["provenance"]["software"] = {f"package-{k}": "1.2.3+" + "x" * 40 for k in range(20)}
    return out


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    files = []
    for i, cell in enumerate(SCHEDULED):
        files.append(tmp / f"{i}.json")
        files[-1].write_text(json.dumps(seeded(cell["dataset"], cell["model"], cell["variant"], cell["task"], i)))
    plan = tmp / "plan.jsonl"
    plan.write_text("\n".join([json.dumps({"kind": "dataset", **d}) for d in PLAN["datasets"]]
                              + [json.dumps({"kind": "model", **m}) for m in PLAN["models"]]
                              + [json.dumps({"kind": "cell", **c}) for c in PLAN["cells"]]))
    trace = tmp / "trace.txt"
    trace.write_text("task_id\tprocess\ttag\tstatus\texit\tattempt\trealtime\t%cpu\tpeak_rss\tworkdir\tcontainer\n"
                     "1\tC:INFERENCE:RUN_MODEL\th:scvi:homo_sapiens\tCOMPLETED\t0\t1\t2m 5s\t180.0%\t1.2 GB\t/w/1\tscvi:0.1.0\n"
                     "2\tC:BASELINES:RUN_BASELINE\th:baseline:pca\tCOMPLETED\t0\t1\t20s\t95.0%\t400 MB\t/w/2\tbase:0.1.0\n")
    write_report(files, [], tmp / "out", plan_file=plan, trace_file=trace)
    return tmp / "out" / "report.html"


def test_report_renders_with_its_plots(report_html, tmp_path):
    run = render(report_html, tmp_path, "--dump-dom", "--virtual-time-budget=5000")
    dom = run.stdout
    assert "czbenchmarks-nf benchmark report" in dom, run.stderr[-2000:]
    images = re.findall(r'<img class="plot"[^>]*src="data:image/png;base64,', dom)
    assert len(images) >= 5  # ranking figure, quality-vs-cost, a plot per task
    assert "Complete: all 6 expected" in dom and "(1 not applicable)" in dom
    png = tmp_path / "shot.png"
    screenshot(report_html, png, tmp_path)
    # A rendered page with plots is far from blank: many distinct colours.
    from PIL import Image

    colours = Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50


def test_sections_are_there_and_rows_stay_short(report_html, tmp_path):
    measured = tmp_path / "measured.html"
    measured.write_text(report_html.read_text().replace("</body>", MEASURE_ROWS + "</body>"))
    run = render(measured, tmp_path, "--dump-dom", "--virtual-time-budget=5000", "--window-size=1400,2000")
    dom = run.stdout
    for section in ("ranking-figure", "ranking-table", "cost-table", "quality-cost", "glossary-table", "task-perturbation",
                    "task-clustering", "provenance-table", "models"):
        assert f'id="{section}"' in dom, (section, run.stderr[-2000:])
    # Scaled scores with their seed intervals, the perturbation metrics and their glossary entries.
    assert "95% t" in dom and "s=" in dom
    assert "pearson_correlation (subset=top20)" in dom and "czbenchmarks: PEARSON_CORRELATION" in dom
    assert "<details>" in dom  # the long software list is folded
    found = re.search(r'<pre id="row-measure">(.*?)</pre>', dom)
    assert found, run.stderr[-2000:]
    measure = json.loads(found.group(1).replace("&quot;", '"'))
    assert measure["rows"] > 20
    assert measure["tallest"] <= MAX_ROW_PX, measure


def test_the_test_profiles_report_shows_ranking_intervals_cost_glossary_and_cell_eval(test_profile_run, tmp_path):
    """The real -profile test report (3 seeds, scVI, baselines, scGenePT's perturbation set): every section a
    reader decides from is there, with seed intervals and cell-eval's metrics, and no row is oversized."""
    html = test_profile_run.outdir / "report.html"
    measured = tmp_path / "measured.html"
    measured.write_text(html.read_text().replace("</body>", MEASURE_ROWS + "</body>"))
    run = render(measured, tmp_path, "--dump-dom", "--virtual-time-budget=5000", "--window-size=1400,2000")
    dom = run.stdout
    for section in ("ranking-figure", "ranking-table", "cost-table", "quality-cost", "glossary-table",
                    "task-perturbation", "task-clustering", "models"):
        assert f'id="{section}"' in dom, (section, run.stderr[-2000:])
    assert "95% t" in dom  # -profile test runs 3 seeds: intervals are shown
    for name in ("cell_eval_overlap_at_n", "cell_eval_de_direction_match", "cell_eval_de_spearman_lfc_sig",
                 "cell_eval_vcc_score"):
        assert name in dom, name
    found = re.search(r'<pre id="row-measure">(.*?)</pre>', dom)
    assert found, run.stderr[-2000:]
    measure = json.loads(found.group(1).replace("&quot;", '"'))
    assert measure["tallest"] <= MAX_ROW_PX, measure
