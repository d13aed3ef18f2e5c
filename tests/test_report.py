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
    assert results["schema_version"] == "4.0" and results["n_results"] == len(SCHEDULED)
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


# --- Metric catalogue, scaled scores, intervals, cost (schema 4.0) -------------------------------------------------

def _emitted_metric_names() -> set[str]:
    """Every metric name the tasks' sources hand to MetricResult / ComputedMetric: literal names, and
    f-strings over a loop on a module-level tuple (``for score in SCORES: f"mean_fold_{score}"``).
    Any other computed name fails here, so a new metric cannot slip past the catalogue."""
    import ast
    import importlib
    from pathlib import Path

    import czbenchmarks.tasks as tasks_pkg

    names, unknown = set(), []
    for source in sorted(Path(tasks_pkg.__file__).parent.glob("*.py")):
        tree = ast.parse(source.read_text())
        loops = {}  # loop variable -> module constant it iterates over
        for node in ast.walk(tree):
            if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Name):
                loops[node.target.id] = node.iter.id
        module = importlib.import_module(f"czbenchmarks.tasks.{source.stem}")
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("MetricResult", "ComputedMetric")
                    and node.args):
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
            elif isinstance(first, ast.JoinedStr):
                holes = [v for v in first.values if isinstance(v, ast.FormattedValue)]
                if len(holes) == 1 and isinstance(holes[0].value, ast.Name) and holes[0].value.id in loops:
                    prefix = "".join(v.value for v in first.values[:first.values.index(holes[0])] if isinstance(v, ast.Constant))
                    suffix = "".join(v.value for v in first.values[first.values.index(holes[0]) + 1:] if isinstance(v, ast.Constant))
                    names |= {f"{prefix}{x}{suffix}" for x in getattr(module, loops[holes[0].value.id])}
                else:
                    unknown.append(f"{source.name}:{node.lineno}")
            elif not (isinstance(first, ast.Subscript) or isinstance(first, ast.Name)):
                unknown.append(f"{source.name}:{node.lineno}")
    assert not unknown, f"metric names this test cannot read (use literal names): {unknown}"
    return names


def test_every_metric_the_tasks_emit_is_in_the_catalogue_and_snake_case():
    from czbenchmarks.report_scores import load_metric_catalogue

    catalogue = load_metric_catalogue()
    emitted = _emitted_metric_names()
    assert {"adjusted_rand_index", "mean_fold_auroc", "entropy_per_cell", "pearson_correlation", "jaccard"} <= emitted
    assert emitted - set(catalogue) == set(), "add these to conf/metrics.yaml"
    for name, spec in catalogue.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert spec.description and spec.tasks and spec.direction in ("higher", "lower"), name
    assert catalogue["mean_squared_error"].ideal == 0.0 and catalogue["mean_squared_error"].worst is None
    assert catalogue["pearson_correlation"].czbenchmarks == "PEARSON_CORRELATION"


def test_a_bad_catalogue_entry_is_one_clear_error(tmp_path):
    import pytest

    from czbenchmarks.report_scores import load_metric_catalogue

    bad = tmp_path / "metrics.yaml"
    bad.write_text("metrics:\n  foo:\n    direction: up\n    range: [0, 1]\n")
    with pytest.raises(ValueError, match="metric 'foo' needs direction"):
        load_metric_catalogue(bad)
    bad.write_text("metrics:\n  foo:\n    direction: higher\n    range: [1, 0]\n")
    with pytest.raises(ValueError, match="metric 'foo' has an empty range"):
        load_metric_catalogue(bad)


def metric(name, value, values=None, interval=None, **params):
    entry = {"metric_type": name, "value": value, "params": params}
    if values is not None:
        entry["values"] = values
    if interval is not None:
        entry["interval"] = interval
    return entry


def scored_docs():
    """Clustering on d (pca baseline 0.4), perturbation on p (two control baselines), cross-species (none)."""
    return [
        doc("d", "baseline", "pca", "clustering", metrics=[metric("adjusted_rand_index", 0.4)]),
        doc("d", "good", "v", "clustering", metrics=[metric("adjusted_rand_index", 0.7)]),
        doc("d", "bad", "v", "clustering", metrics=[metric("adjusted_rand_index", 0.1)]),
        doc("p", "baseline", "control_mean", "perturbation",
            metrics=[metric("mean_squared_error", 2.0, condition="MEAN", subset="all"),
                     metric("mean_squared_error", 9.0, condition="GENE1+ctrl", subset="all")]),
        doc("p", "baseline", "control_median", "perturbation",
            metrics=[metric("mean_squared_error", 1.0, condition="MEAN", subset="all")]),
        doc("p", "good", "v", "perturbation", metrics=[metric("mean_squared_error", 0.5, condition="MEAN", subset="all")]),
        doc("h+m", "good", "v", "cross_species", metrics=[metric("entropy_per_cell", 0.25)]),
        doc("h+m", "bad", "v", "cross_species", metrics=[metric("entropy_per_cell", 0.0)]),
    ]


def test_scaled_scores_sit_between_the_best_baseline_and_the_ideal():
    import pytest

    results = build_results(scored_docs(), [])
    ranking = results["ranking"]
    scaled = {(s["dataset"], s["label"]): s for s in ranking["scaled"]}
    # Higher is better: (0.7 - 0.4) / (1 - 0.4); below the baseline goes negative (unclipped per metric).
    assert scaled[("d", "good")]["scaled"] == pytest.approx(0.5)
    assert scaled[("d", "bad")]["scaled"] == pytest.approx(-0.5)
    assert scaled[("d", "BASELINE:pca")]["scaled"] == pytest.approx(0.0)
    # Lower is better: the best of the two baselines (1.0) is 0, the ideal MSE 0 is 1; per-condition rows are not scaled.
    assert scaled[("p", "good")]["negative_control"] == {"value": 1.0, "source": "BASELINE:control_median"}
    assert scaled[("p", "good")]["scaled"] == pytest.approx(0.5)
    assert scaled[("p", "BASELINE:control_mean")]["scaled"] == pytest.approx(-1.0)
    assert sum(s["dataset"] == "p" for s in ranking["scaled"]) == 3
    # No baseline (cross-species): 0 = the worst end of the range.
    assert scaled[("h+m", "good")]["scaled"] == pytest.approx(0.25)
    assert "no baseline" in scaled[("h+m", "good")]["negative_control"]["source"]
    # Means clip to [0, 1]: 'bad' is 0 on clustering, not -0.5; overall = mean of task means.
    by_label = {m["label"]: m for m in ranking["models"]}
    assert by_label["bad"]["tasks"]["clustering"]["mean"] == 0.0
    assert by_label["good"]["overall"] == pytest.approx((0.5 + 0.5 + 0.25) / 3)
    assert [m["label"] for m in ranking["models"]][0] == "good" and by_label["good"]["rank"] == 1
    # A value at the worst end gets the catalogue's explanation as its note.
    zero = next(r for r in results["results"] if r["model"] == "bad" and r["task"] == "cross_species")
    assert "no mixing" in zero["note"]
    rows = list(csv.DictReader(io.StringIO(results_csv(results))))
    good = next(r for r in rows if r["model"] == "good" and r["task"] == "clustering")
    assert float(good["scaled_score"]) == pytest.approx(0.5)
    condition = next(r for r in rows if r["task"] == "perturbation" and "GENE1" in r["metric_params"])
    assert condition["scaled_score"] == ""
    page = render_report(results, plots=False)
    assert "id='ranking'" in page and "id='glossary'" in page and "no mixing" in page
    assert page.index("id='ranking'") < page.index("id='summary'")


def test_seed_values_give_scaled_intervals_and_inseparable_neighbours_are_marked():
    import pytest

    from czbenchmarks.report_scores import t_interval

    t = lambda values: t_interval(values)  # noqa: E731
    docs = [
        doc("d", "baseline", "pca", "clustering", metrics=[metric("adjusted_rand_index", 0.4)]),
        # a and b overlap; c is far below both. a carries its own interval, b and c only seed values.
        doc("d", "a", "v", "clustering", seeds=[1, 2, 3],
            metrics=[metric("adjusted_rand_index", 0.70, [0.68, 0.70, 0.72], {**t([0.68, 0.70, 0.72])})]),
        doc("d", "b", "v", "clustering", seeds=[1, 2, 3], metrics=[metric("adjusted_rand_index", 0.69, [0.66, 0.69, 0.72])]),
        doc("d", "c", "v", "clustering", seeds=[1, 2, 3], metrics=[metric("adjusted_rand_index", 0.45, [0.44, 0.45, 0.46])]),
        doc("d", "single", "v", "clustering", metrics=[metric("adjusted_rand_index", 0.42)]),
    ]
    results = build_results(docs, [])
    rows = {r["model"]: r for r in results["results"]}
    assert rows["a"]["values"] == [0.68, 0.70, 0.72] and rows["a"]["interval"]["method"] == "t"
    assert rows["single"]["values"] is None and rows["single"]["interval"] is None
    scaled = {s["label"]: s for s in results["ranking"]["scaled"]}
    # Each seed scaled with the same controls; the interval is the affine image of the metric's.
    assert scaled["a"]["scaled_values"] == pytest.approx([(v - 0.4) / 0.6 for v in (0.68, 0.70, 0.72)])
    assert scaled["a"]["scaled_interval"]["low"] == pytest.approx((rows["a"]["interval"]["low"] - 0.4) / 0.6)
    assert scaled["b"]["scaled_interval"]["low"] < scaled["b"]["scaled"] < scaled["b"]["scaled_interval"]["high"]
    assert scaled["single"]["scaled_interval"] is None
    models = results["ranking"]["models"]
    assert [m["label"] for m in models] == ["a", "b", "c", "single", "BASELINE:pca"]
    by = {m["label"]: m for m in models}
    assert by["a"]["overall_interval"] is not None
    assert by["a"]["separable_from_next"] is False       # a and b overlap
    assert by["b"]["separable_from_next"] is True        # b is clear of c
    assert by["c"]["separable_from_next"] is None        # 'single' has one seed: no interval
    out = list(csv.DictReader(io.StringIO(results_csv(results))))
    a = next(r for r in out if r["model"] == "a")
    assert json.loads(a["values"]) == [0.68, 0.70, 0.72] and float(a["ci_low"]) < 0.70 < float(a["ci_high"])
    assert next(r for r in out if r["model"] == "single")["ci_low"] == ""
    page = render_report(results, plots=False)
    assert "not separable" in page and "95% t" in page


def test_cost_comes_from_the_trace_and_the_provenance(tmp_path):
    import pytest

    from czbenchmarks.report_cost import last_attempts, parse_duration, parse_memory

    assert parse_duration("1h 2m 3s") == 3723 and parse_duration("120ms") == pytest.approx(0.12)
    assert parse_duration("-") is None and parse_memory("1.5 GB") == 1.5 * 1024**3 and parse_memory("0") == 0
    docs = scored_docs()
    for d in docs:
        if d["model"] == "good" and d["dataset"] == "d":
            d["provenance"] = {"dataset": "d", "model": "good", "variant": "v", "n_cells": 900,
                               "run_info": {"gpu_peak_memory": 3 * 1024**3, "precision": "bfloat16"},
                               "weights": {"files": {"w.bin": "cd" * 32}}}
    trace = tmp_path / "trace.txt"
    trace.write_text(
        "task_id\tprocess\ttag\tstatus\texit\tattempt\trealtime\t%cpu\tpeak_rss\tworkdir\tcontainer\n"
        "1\tX:INFERENCE:RUN_MODEL\td:good:v\tFAILED\t137\t1\t10s\t100.0%\t9 GB\t/w1\tghcr.io/x/good:1\n"
        "2\tX:INFERENCE:RUN_MODEL\td:good:v\tCOMPLETED\t0\t2\t1m 30s\t250.0%\t2 GB\t/w2\tghcr.io/x/good:1\n"
        "3\tX:EVALUATE\td:good:v:clustering\tCOMPLETED\t0\t1\t20s\t100.0%\t1 GB\t/w3\t-\n"
        "4\tX:BASELINES:RUN_BASELINE\td:baseline:pca\tCACHED\t0\t1\t5s\t100.0%\t512 MB\t/w4\t-\n")
    results = build_results(docs, [], trace_rows=last_attempts(trace),
                            registry={"good": {"citation": "Good et al. 2024"}})
    cost = {(c["dataset"], c["label"]): c for c in results["cost"]["outputs"]}
    good = cost[("d", "good")]
    assert good["wall_seconds"] == 90 and good["cpu_hours"] == pytest.approx(2.5 * 90 / 3600)
    assert good["peak_rss_bytes"] == 2 * 1024**3 and good["gpu_peak_memory_bytes"] == 3 * 1024**3
    assert good["cells_per_second"] == pytest.approx(10.0) and good["evaluate_wall_seconds"] == 20
    assert good["container"] == "ghcr.io/x/good:1"
    assert cost[("d", "BASELINE:pca")]["wall_seconds"] == 5 and cost[("d", "BASELINE:pca")]["container"] == ""
    card = next(c for c in results["model_cards"] if c["label"] == "good")
    assert card["citation"] == "Good et al. 2024" and card["containers"] == ["ghcr.io/x/good:1"]
    assert card["precision"] == ["bfloat16"] and "w.bin=" in card["weights"]["d"]
    page = render_report(results, plots=True)
    assert "id='cost-table'" in page and "id='quality-cost'" in page and "Good et al. 2024" in page
    assert "1m 30s" in page


def test_report_of_the_full_catalogue_stays_under_10_mb(tmp_path):
    """The 40-dataset x 6-model plan (bench/bench_report_size.py's generator): report.html with its plots,
    plus one UMAP per embedding output at the size one measured UMAP has, stays below Seqera Platform's
    10 MB preview limit."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_report_size as bench

    sizes = bench.measure(tmp_path, n_conditions=100, umap_cells=1000, seeds=3)
    assert sizes["n_results"] > 16_000 and sizes["n_ranked_models"] >= 9
    assert sizes["report_html_bytes_with_all_umaps"] < 10 * 1024 * 1024, sizes
