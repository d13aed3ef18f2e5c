"""REPORT: rows, completeness (every missing cell with its reason), CSV and the self-contained HTML."""

from __future__ import annotations

import csv
import io
import json
import re

from czbenchmarks.report import build_results, results_csv, write_report
from czbenchmarks.report_html import render_report


def cell(dataset, model, variant, task, status="scheduled", reason="", stage="validate"):
    return {"dataset": dataset, "datasets": dataset.split("+"), "model": model, "variant": variant, "task": task,
            "status": status, "reason": reason, "stage": stage}


# A plan as the workflow writes it: the cells it scheduled (or found not applicable) after the gate.
PLAN = {
    "run": {"seed": 42, "models": "scvi"},
    "datasets": [
        {"id": "h", "organism": "homo_sapiens", "label_key": "cell_type", "tasks": ["clustering", "cross_species"]},
        {"id": "m", "organism": "mus_musculus", "label_key": "cell_type", "tasks": ["clustering", "cross_species"]},
        {"id": "p", "organism": "homo_sapiens", "label_key": "condition", "tasks": ["perturbation"]},
    ],
    "models": [{"name": "scvi", "model_type": "SCVI", "role": "model", "output": "embedding"}],
    "pairs": [{"dataset": d, "model": m} for d, m in [("h", "scvi"), ("m", "scvi"), ("h", "baseline"), ("m", "baseline"),
                                                     ("p", "baseline")]],
    "cells": [
        cell("h", "scvi", "homo_sapiens", "clustering"),
        cell("m", "scvi", "mus_musculus", "clustering", "not_applicable", "dataset 'm' x scvi: no mouse weights"),
        cell("h", "baseline", "pca", "clustering"), cell("m", "baseline", "pca", "clustering"),
        cell("p", "baseline", "control_mean", "perturbation"), cell("p", "baseline", "control_median", "perturbation"),
        cell("h+m", "scvi", "homo_sapiens+mus_musculus", "cross_species", stage="group"),
    ],
}
SCHEDULED = [c for c in PLAN["cells"] if c["status"] == "scheduled"]


def doc(dataset, model, variant, task, value=0.5, status="ok", **extra):
    base = {"dataset": dataset, "datasets": dataset.split("+"), "model": model, "variant": variant, "task": task,
            "seed": 42, "status": status, "params": {"label_key": "cell_type"}, "n_cells_scored": 10,
            "model_type": "BASELINE" if model == "baseline" else "SCVI",
            "provenance": {"weights": {"files": {"model.pt": "ab" * 32}}, "software": {"scanpy": "1.11.5"}},
            "metrics": [{"metric_type": "adjusted_rand_index", "value": value, "params": {},
                         "computation": {"method": "approximate", "recall_at_k": 0.97}}]}
    if task == "perturbation":
        base["metrics"] = [{"metric_type": "mean_squared_error", "value": value,
                            "params": {"condition": "MEAN", "subset": "all"}}]
    base.update(extra)
    return base


def test_a_run_with_gaps_never_looks_complete(tmp_path):
    docs = [doc("h", "scvi", "homo_sapiens", "clustering"), doc("h", "baseline", "pca", "clustering"),
            doc("m", "baseline", "pca", "clustering"),
            doc("p", "baseline", "control_mean", "perturbation", status="error", error="ValueError: boom", metrics=[])]
    verdicts = [{"dataset": "m", "model": "scvi", "verdict": "incompatible", "reasons": ["no mouse weights"]},
                {"dataset": "h", "model": "scvi", "verdict": "pass", "reasons": []}]
    # RUN_MODEL of h x scvi's cross-species partner failed; its log tail is the reason.
    work = tmp_path / "work"
    work.mkdir()
    (work / ".command.err").write_text("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n")
    trace = tmp_path / "trace.txt"
    trace.write_text("task_id\tprocess\ttag\tstatus\texit\tattempt\tworkdir\n"
                     f"7\tCZBENCHMARKS:BASELINES:RUN_BASELINE\tp:baseline:control_median\tFAILED\t137\t3\t{work}\n"
                     f"3\tCZBENCHMARKS:BASELINES:RUN_BASELINE\tp:baseline:control_median\tFAILED\t137\t2\t{work}\n")
    from czbenchmarks.report import failed_from_trace

    results = build_results(docs, verdicts, PLAN, failed_from_trace(trace))
    check = results["completeness"]
    assert not check["complete"] and check["expected"] == 6 and check["produced"] == 3
    assert [(c["dataset"], c["model"], c["task"]) for c in check["not_applicable"]] == [("m", "scvi", "clustering")]
    reasons = {(c["dataset"], c["model"], c["variant"], c["task"]): c["reason"] for c in check["missing"]}
    assert set(reasons) == {("p", "baseline", "control_mean", "perturbation"),
                            ("p", "baseline", "control_median", "perturbation"),
                            ("h+m", "scvi", "homo_sapiens+mus_musculus", "cross_species")}
    assert reasons[("p", "baseline", "control_mean", "perturbation")] == "evaluation failed: ValueError: boom"
    median = reasons[("p", "baseline", "control_median", "perturbation")]
    assert "RUN_BASELINE failed (exit 137, attempt 3), killed" in median and "CUDA out of memory" in median, median
    assert "no result" in reasons[("h+m", "scvi", "homo_sapiens+mus_musculus", "cross_species")]
    assert any("dataset 'p'" in flag for flag in check["flags"])
    rows = list(csv.DictReader(io.StringIO(results_csv(results))))
    assert sum(r["status"] == "ok" for r in rows) == 3 and sum(r["status"] == "missing" for r in rows) == 3
    ok = next(r for r in rows if r["status"] == "ok")
    assert ok["seed"] == "42" and "model.pt=" in ok["weights_sha256"] and "scanpy" in ok["software"]
    assert json.loads(ok["computation"]) == {"method": "approximate", "recall_at_k": 0.97}
    # Provenance is stored once per output and referenced by every row of it.
    ids = {r["provenance_id"] for r in results["results"]}
    assert len(ids) == 1 and set(results["provenance"]) == ids  # the three rows share one output's record
    assert all("provenance" not in r and "software" not in r for r in results["results"])
    assert results["provenance"][results["results"][0]["provenance_id"]]["software"]["scanpy"] == "1.11.5"
    page = render_report(results, plots=False)
    assert "Incomplete" in page and "no mouse weights" in page and "ValueError: boom" in page
    # Failures come first: the missing table precedes the summary.
    assert page.index("id='missing'") < page.index("id='summary'") < page.index("id='not-applicable'")


def test_a_later_gate_stage_overrides_and_a_pair_without_verdict_is_missing():
    plan = dict(PLAN, cells=PLAN["cells"] + [cell("h", "scvi", "homo_sapiens", "clustering", "not_applicable",
                                                  "only 2 of 700 genes", stage="vocabulary")],
                pairs=PLAN["pairs"] + [{"dataset": "p", "model": "scgenept"},
                                       {"dataset": "h", "model": "baseline", "entry": "raw_expression"}])
    check = build_results([], [], plan)["completeness"]
    na = {(c["dataset"], c["model"], c["task"]): c["reason"] for c in check["not_applicable"]}
    assert na[("h", "scvi", "clustering")] == "only 2 of 700 genes"
    assert {"dataset": "p", "model": "scgenept", "variant": "", "task": "*",
            "reason": "VALIDATE did not finish (see pipeline_info/trace.txt)"} in check["missing"]
    # Baselines share the model name: the undecided one is told apart by its registry entry.
    assert {"dataset": "h", "model": "baseline", "variant": "raw_expression", "task": "*",
            "reason": "VALIDATE did not finish (see pipeline_info/trace.txt)"} in check["missing"]


def test_complete_run_and_html_has_plots(tmp_path):
    docs = [doc(c["dataset"], c["model"], c["variant"], c["task"], value=0.1 * i) for i, c in enumerate(SCHEDULED)]
    files = []
    for i, d in enumerate(docs):
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps(d))
    plan = tmp_path / "plan.jsonl"
    plan.write_text("\n".join([json.dumps({"kind": "run", **PLAN["run"]})]
                              + [json.dumps({"kind": "dataset", **d}) for d in PLAN["datasets"]]
                              + [json.dumps({"kind": "model", **m}) for m in PLAN["models"]]
                              + [json.dumps({"kind": "pair", **p}) for p in PLAN["pairs"]]
                              + [json.dumps({"kind": "cell", **c}) for c in PLAN["cells"]]))
    results = write_report(files, [], tmp_path / "out", plan_file=plan)
    assert results["completeness"]["complete"], results["completeness"]
    assert results["schema_version"] == "3.0" and results["n_results"] == len(SCHEDULED)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Complete: all 6 expected" in page and "(1 not applicable)" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= 3  # clustering, cross_species, perturbation
    assert "http://" not in page and "https://" not in page  # self-contained
    on_disk = json.loads((tmp_path / "out" / "benchmark_results.json").read_text())
    assert on_disk["run"]["seed"] == 42 and on_disk["datasets"][0]["id"] == "h"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["complete"] and summary["expected"] == 6 and summary["not_applicable"] == 1


def test_cross_species_rows_carry_every_datasets_weight_checksums():
    from czbenchmarks.report import _weights_digest

    part = lambda digest: {"weights": {"files": {"model.pt": digest}}}  # noqa: E731
    assert _weights_digest({"parts": {"mouse": part("b"), "human": part("a")}}) == "human:model.pt=a;mouse:model.pt=b"
    assert _weights_digest(part("a")) == "model.pt=a"
    assert _weights_digest({}) == ""
