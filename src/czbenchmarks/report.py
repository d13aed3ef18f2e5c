"""REPORT: one table of every dataset x model x task x metric, the pairs that did not run, completeness.

Schema of ``benchmark_results.json``: see docs/output.md (``schema_version`` below).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from . import __version__
from .provenance import utc_now

#: Bump when the shape of benchmark_results.json changes; documented in docs/output.md.
RESULTS_SCHEMA_VERSION = "2.0"

CSV_COLUMNS = [
    "dataset", "model", "model_type", "variant", "task", "metric", "value", "metric_params", "task_params",
    "seed", "n_cells_scored", "weights_sha256", "software",
]
EMBEDDING_TASKS = ("clustering", "embedding", "label_prediction", "integration")
BASELINE_VARIANTS = {
    "clustering": ["pca"], "embedding": ["pca"], "integration": ["pca"],
    "label_prediction": ["raw_expression"], "perturbation": ["control_mean", "control_median"],
}
#: Above this share of missing cells per model or dataset, the completeness check flags it (Open Problems' QC).
MAX_MISSING_SHARE = 0.10


def _weights_digest(provenance: Dict[str, Any]) -> str:
    """``path=sha256`` of every weight file; multi-dataset rows (cross-species) list each dataset's, prefixed."""
    if provenance.get("parts"):
        return ";".join(f"{dataset}:{entry}" for dataset, part in sorted(provenance["parts"].items())
                        for entry in _weights_digest(part).split(";") if entry)
    files = (provenance.get("weights") or {}).get("files") or {}
    return ";".join(f"{path}={digest}" for path, digest in sorted(files.items()))


def metric_rows(metric_docs: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Flatten successful EVALUATE documents into one row per metric, sorted for stable output."""
    rows = []
    for doc in metric_docs:
        if doc.get("status", "ok") != "ok":
            continue
        provenance = doc.get("provenance", {}) or {}
        for metric in doc["metrics"]:
            rows.append(
                {
                    "dataset": doc["dataset"],
                    "datasets": doc.get("datasets", [doc["dataset"]]),
                    "model": doc["model"],
                    "model_type": doc.get("model_type", ""),
                    "variant": doc.get("variant", ""),
                    "task": doc["task"],
                    "metric": metric["metric_type"],
                    "value": metric["value"],
                    "metric_params": metric.get("params", {}),
                    "note": metric.get("note", ""),
                    "seed": doc.get("seed"),
                    "n_cells_scored": doc.get("n_cells_scored"),
                    "task_params": doc.get("params", {}),
                    "weights_sha256": _weights_digest(provenance),
                    "software": {**(provenance.get("software") or {}), **{
                        f"evaluate:{k}": v for k, v in (doc.get("evaluation_software") or {}).items()}},
                    "provenance": provenance,
                }
            )
    rows.sort(key=lambda r: (r["dataset"], r["task"], r["model"] == "baseline", r["model"], r["variant"], r["metric"],
                             json.dumps(r["metric_params"], sort_keys=True)))
    return rows


def skipped_pairs(verdicts: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Every dataset x model pair whose verdict was not ``pass``, with the reasons."""
    skipped = [
        {"dataset": v["dataset"], "model": v["model"], "verdict": v["verdict"], "reasons": v["reasons"]}
        for v in verdicts
        if v["verdict"] != "pass"
    ]
    return sorted(skipped, key=lambda s: (s["dataset"], s["model"]))


def failed_tasks(metric_docs: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """EVALUATE runs that could not score (``status: error``), with the error."""
    return sorted(
        ({"dataset": d["dataset"], "model": d["model"], "variant": d.get("variant", ""), "task": d["task"],
          "error": d.get("error", "")} for d in metric_docs if d.get("status", "ok") != "ok"),
        key=lambda f: (f["dataset"], f["model"], f["variant"], f["task"]),
    )


def read_plan(path: Optional[Path]) -> Dict[str, Any]:
    """The workflow's plan (JSON lines: one ``run``, ``dataset`` and ``model`` entry each)."""
    plan: Dict[str, Any] = {"run": {}, "datasets": [], "models": []}
    if not path:
        return plan
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        kind = entry.pop("kind", "")
        if kind == "run":
            plan["run"] = entry
        elif kind == "dataset":
            plan["datasets"].append(entry)
        elif kind == "model":
            plan["models"].append(entry)
    plan["datasets"].sort(key=lambda d: d["id"])
    return plan


def expected_cells(plan: Dict[str, Any]) -> List[Dict[str, str]]:
    """Every (dataset, model, variant, task) the run should produce: datasets x models x tasks that apply.

    Real models: every task of the dataset that fits their output (embeddings: the embedding tasks;
    bring-your-own models only on the datasets they were given for). BASELINE: its variant for each task
    (none for cross_species, as in the reference). cross_species: one cell per non-baseline model when
    the datasets asking for it span 2+ organisms.
    """
    cells: List[Dict[str, str]] = []
    datasets = plan.get("datasets", [])
    for dataset in datasets:
        for model in plan.get("models", []):
            if model.get("source") == "external" and dataset["id"] not in model.get("datasets", []):
                continue
            for task in dataset.get("tasks", []):
                if task == "cross_species":
                    continue
                if model.get("source") == "baseline":
                    for variant in BASELINE_VARIANTS.get(task, []):
                        cells.append({"dataset": dataset["id"], "model": model["model"], "variant": variant, "task": task})
                    continue
                fits = task == "perturbation" if model.get("output") == "perturbation" else task in EMBEDDING_TASKS
                if fits:
                    cells.append({"dataset": dataset["id"], "model": model["model"], "variant": "", "task": task})
    cross = [d for d in datasets if "cross_species" in d.get("tasks", [])]
    if len({d["organism"] for d in cross}) > 1:
        for model in plan.get("models", []):
            if model.get("source") != "baseline" and model.get("output", "embedding") == "embedding":
                ids = sorted(d["id"] for d in cross
                             if model.get("source") != "external" or d["id"] in model.get("datasets", []))
                cells.append({"dataset": "+".join(ids), "model": model["model"], "variant": "", "task": "cross_species"})
    return cells


def completeness(
    plan: Dict[str, Any], metric_docs: List[Dict[str, Any]], verdicts: List[Dict[str, Any]]
) -> Dict[str, Any]:
    """Expected vs produced cells; every missing cell with its reason (Open Problems-style QC)."""
    expected = expected_cells(plan)
    produced: Dict[Tuple[str, str, str, str], Dict[str, Any]] = {}
    for doc in metric_docs:
        produced[(doc["dataset"], doc["model"], doc.get("variant", ""), doc["task"])] = doc
        if doc["task"] == "cross_species":
            produced[("*", doc["model"], "", "cross_species")] = doc
    verdict_of = {(v["dataset"], v["model"]): v for v in verdicts}

    def lookup(cell: Dict[str, str]) -> Optional[Dict[str, Any]]:
        if cell["task"] == "cross_species":
            return produced.get(("*", cell["model"], "", "cross_species"))
        if cell["variant"]:
            return produced.get((cell["dataset"], cell["model"], cell["variant"], cell["task"]))
        for key, doc in produced.items():
            if key[0] == cell["dataset"] and key[1] == cell["model"] and key[3] == cell["task"]:
                return doc
        return None

    missing = []
    for cell in expected:
        doc = lookup(cell)
        if doc is not None and doc.get("status", "ok") == "ok":
            continue
        if doc is not None:
            reason = f"evaluation failed: {doc.get('error', 'unknown error')}"
        else:
            parts = cell["dataset"].split("+")
            bad = [verdict_of[(d, cell["model"])] for d in parts if (d, cell["model"]) in verdict_of
                   and verdict_of[(d, cell["model"])]["verdict"] != "pass"]
            if bad:
                reason = "; ".join(f"{v['dataset']}: {v['verdict']}: {' | '.join(v['reasons'])}" for v in bad)
            elif cell["task"] == "cross_species":
                reason = "fewer than 2 organisms embedded by this model (the others did not run)"
            else:
                reason = "no metrics produced: the model, baseline or evaluation process failed or did not run (see pipeline_info/trace.txt)"
        missing.append({**cell, "reason": reason})
    flags = []
    for field in ("model", "dataset"):
        for value in sorted({c[field] for c in expected}):
            total = sum(1 for c in expected if c[field] == value)
            lost = sum(1 for c in missing if c[field] == value)
            if total and lost / total > MAX_MISSING_SHARE:
                flags.append(f"{field} '{value}': {lost} of {total} expected results missing ({lost / total:.0%})")
    return {
        "expected": len(expected),
        "produced": len(expected) - len(missing),
        "complete": not missing,
        "missing": missing,
        "flags": flags,
    }


def build_results(
    metric_docs: List[Dict[str, Any]], verdicts: List[Dict[str, Any]], plan: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """The ``benchmark_results.json`` document."""
    from .provenance import software_versions

    plan = plan or {"run": {}, "datasets": [], "models": []}
    rows = metric_rows(metric_docs)
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "czbenchmarks_nf_version": __version__,
        "generated": utc_now(),
        "run": plan.get("run", {}),
        "datasets": plan.get("datasets", []),
        "models": plan.get("models", []),
        "n_results": len(rows),
        "results": rows,
        "skipped": skipped_pairs(verdicts),
        "failed": failed_tasks(metric_docs),
        "completeness": completeness(plan, metric_docs, verdicts) if plan.get("datasets") else None,
        "report_software": software_versions(),
    }


def results_csv(results: Dict[str, Any]) -> str:
    """CSV of the metric rows, then one row per missing result (empty value, status and reason)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS + ["status", "reason"], lineterminator="\n")
    writer.writeheader()
    for row in results["results"]:
        out = {k: row.get(k) for k in CSV_COLUMNS}
        for key in ("metric_params", "task_params", "software"):
            out[key] = json.dumps(row.get(key, {}), sort_keys=True)
        writer.writerow({**out, "status": "ok", "reason": row.get("note", "")})
    missing = (results.get("completeness") or {}).get("missing")
    if missing is None:  # no plan: list what we know
        missing = [{"dataset": s["dataset"], "model": s["model"], "variant": "", "task": "",
                    "reason": f"{s['verdict']}: {' | '.join(s['reasons'])}"} for s in results["skipped"]]
        missing += [{**f, "reason": f"evaluation failed: {f['error']}"} for f in results.get("failed", [])]
    for cell in missing:
        writer.writerow({"dataset": cell["dataset"], "model": cell["model"], "variant": cell.get("variant", ""),
                         "task": cell.get("task", ""), "status": "missing", "reason": cell["reason"]})
    return buffer.getvalue()


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(
    metric_files: List[Path], verdict_files: List[Path], outdir: Path, plan_file: Optional[Path] = None,
    embedding_files: Optional[List[Path]] = None, html: bool = True, plots: bool = True,
    umap_max_cells: int = 5000, seed: int = 42,
) -> Dict[str, Any]:
    """Read EVALUATE/VALIDATE JSONs (and the plan) and write ``benchmark_results.json``, ``.csv`` and ``report.html``."""
    metric_docs = [json.loads(Path(p).read_text()) for p in metric_files]
    verdicts = [json.loads(Path(p).read_text()) for p in verdict_files]
    results = build_results(metric_docs, verdicts, read_plan(plan_file))
    outdir.mkdir(parents=True, exist_ok=True)
    _atomic_text(outdir / "benchmark_results.json", json.dumps(results, indent=2, default=str))
    _atomic_text(outdir / "benchmark_results.csv", results_csv(results))
    if html:
        from .report_html import render_report

        _atomic_text(outdir / "report.html", render_report(
            results, embedding_files or [], plots=plots, umap_max_cells=umap_max_cells, seed=seed))
    return results
