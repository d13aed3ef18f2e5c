"""REPORT: rows, completeness (every missing cell with its reason), CSV and the self-contained HTML."""

from __future__ import annotations

import csv
import io
import json
import re

from czbenchmarks.report import build_results, expected_cells, results_csv, write_report
from czbenchmarks.report_html import render_report

PLAN = {
    "run": {"seed": 42, "models": "scvi"},
    "datasets": [
        {"id": "h", "organism": "homo_sapiens", "label_key": "cell_type", "tasks": ["clustering", "cross_species"]},
        {"id": "m", "organism": "mus_musculus", "label_key": "cell_type", "tasks": ["clustering", "cross_species"]},
        {"id": "p", "organism": "homo_sapiens", "label_key": "condition", "tasks": ["perturbation"]},
    ],
    "models": [
        {"model": "scvi", "model_type": "SCVI", "variant": "", "source": "inference", "output": "embedding"},
        {"model": "baseline", "model_type": "BASELINE", "variant": "pca", "source": "baseline", "output": "embedding"},
    ],
}


def doc(dataset, model, variant, task, value=0.5, status="ok", **extra):
    base = {"dataset": dataset, "datasets": dataset.split("+"), "model": model, "variant": variant, "task": task,
            "seed": 42, "status": status, "params": {"label_key": "cell_type"}, "n_cells_scored": 10,
            "model_type": "BASELINE" if model == "baseline" else "SCVI",
            "provenance": {"weights": {"files": {"model.pt": "ab" * 32}}, "software": {"scanpy": "1.11.5"}},
            "metrics": [{"metric_type": "adjusted_rand_index", "value": value, "params": {}}]}
    if task == "perturbation":
        base["metrics"] = [{"metric_type": "mean_squared_error", "value": value,
                            "params": {"condition": "MEAN", "subset": "all"}}]
    base.update(extra)
    return base


def test_expected_cells_are_datasets_x_models_x_tasks():
    cells = {(c["dataset"], c["model"], c["variant"], c["task"]) for c in expected_cells(PLAN)}
    assert cells == {
        ("h", "scvi", "", "clustering"), ("m", "scvi", "", "clustering"),
        ("h", "baseline", "pca", "clustering"), ("m", "baseline", "pca", "clustering"),
        ("p", "baseline", "control_mean", "perturbation"), ("p", "baseline", "control_median", "perturbation"),
        ("h+m", "scvi", "", "cross_species"),
    }


def test_a_run_with_gaps_never_looks_complete():
    docs = [doc("h", "scvi", "homo_sapiens", "clustering"), doc("h", "baseline", "pca", "clustering"),
            doc("m", "baseline", "pca", "clustering"),
            doc("p", "baseline", "control_mean", "perturbation", status="error", error="ValueError: boom", metrics=[])]
    verdicts = [{"dataset": "m", "model": "scvi", "verdict": "incompatible", "reasons": ["no mouse weights"]},
                {"dataset": "h", "model": "scvi", "verdict": "pass", "reasons": []}]
    results = build_results(docs, verdicts, PLAN)
    check = results["completeness"]
    assert not check["complete"] and check["expected"] == 7 and check["produced"] == 3
    reasons = {(c["dataset"], c["model"], c["variant"], c["task"]): c["reason"] for c in check["missing"]}
    assert "incompatible: no mouse weights" in reasons[("m", "scvi", "", "clustering")]
    assert reasons[("p", "baseline", "control_mean", "perturbation")] == "evaluation failed: ValueError: boom"
    assert "did not run" in reasons[("p", "baseline", "control_median", "perturbation")]
    assert "m: incompatible" in reasons[("h+m", "scvi", "", "cross_species")]
    assert any("model 'scvi'" in flag for flag in check["flags"])
    rows = list(csv.DictReader(io.StringIO(results_csv(results))))
    assert sum(r["status"] == "ok" for r in rows) == 3 and sum(r["status"] == "missing" for r in rows) == 4
    ok = next(r for r in rows if r["status"] == "ok")
    assert ok["seed"] == "42" and "model.pt=" in ok["weights_sha256"] and "scanpy" in ok["software"]
    page = render_report(results, plots=False)
    assert "Incomplete" in page and "no mouse weights" in page and "ValueError: boom" in page


def test_complete_run_and_html_has_plots(tmp_path):
    cells = expected_cells(PLAN)
    docs = [doc(c["dataset"], c["model"], c["variant"] or "v", c["task"], value=0.1 * i) for i, c in enumerate(cells)]
    files = []
    for i, d in enumerate(docs):
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps(d))
    plan = tmp_path / "plan.jsonl"
    plan.write_text("\n".join([json.dumps({"kind": "run", **PLAN["run"]})]
                              + [json.dumps({"kind": "dataset", **d}) for d in PLAN["datasets"]]
                              + [json.dumps({"kind": "model", **m}) for m in PLAN["models"]]))
    results = write_report(files, [], tmp_path / "out", plan_file=plan)
    assert results["completeness"]["complete"]
    assert results["schema_version"] == "2.0" and results["n_results"] == len(cells)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Complete: all 7 expected" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= 3  # clustering, cross_species, perturbation
    assert "http://" not in page and "https://" not in page  # self-contained
    on_disk = json.loads((tmp_path / "out" / "benchmark_results.json").read_text())
    assert on_disk["run"]["seed"] == 42 and on_disk["datasets"][0]["id"] == "h"


def test_cross_species_rows_carry_every_datasets_weight_checksums():
    from czbenchmarks.report import _weights_digest

    part = lambda digest: {"weights": {"files": {"model.pt": digest}}}  # noqa: E731
    assert _weights_digest({"parts": {"mouse": part("b"), "human": part("a")}}) == "human:model.pt=a;mouse:model.pt=b"
    assert _weights_digest(part("a")) == "model.pt=a"
    assert _weights_digest({}) == ""
