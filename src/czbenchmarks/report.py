"""REPORT: one table of every dataset x model x task x metric, plus every pair that did not run."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List

from . import __version__
from .provenance import utc_now

#: Bump when the shape of benchmark_results.json changes; documented in docs/output.md.
RESULTS_SCHEMA_VERSION = "1.0"

CSV_COLUMNS = [
    "dataset", "model", "model_type", "variant", "task", "metric", "value",
    "metric_params", "seed", "n_cells_scored", "weights_sha256",
]


def _weights_digest(provenance: Dict[str, Any]) -> str:
    files = (provenance.get("weights") or {}).get("files") or {}
    return ";".join(f"{path}={digest}" for path, digest in sorted(files.items()))


def metric_rows(metric_docs: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Flatten EVALUATE documents into one row per metric, sorted for stable output."""
    rows = []
    for doc in metric_docs:
        provenance = doc.get("provenance", {})
        for metric in doc["metrics"]:
            rows.append(
                {
                    "dataset": doc["dataset"],
                    "model": doc["model"],
                    "model_type": doc.get("model_type", ""),
                    "variant": doc.get("variant", ""),
                    "task": doc["task"],
                    "metric": metric["metric_type"],
                    "value": metric["value"],
                    "metric_params": metric.get("params", {}),
                    "seed": doc.get("seed"),
                    "n_cells_scored": doc.get("n_cells_scored"),
                    "weights_sha256": _weights_digest(provenance),
                    "task_params": doc.get("params", {}),
                    "provenance": provenance,
                }
            )
    rows.sort(key=lambda r: (r["dataset"], r["model_type"] == "BASELINE", r["model"], r["task"], r["metric"],
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


def build_results(metric_docs: List[Dict[str, Any]], verdicts: List[Dict[str, Any]]) -> Dict[str, Any]:
    rows = metric_rows(metric_docs)
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "czbenchmarks_nf_version": __version__,
        "generated": utc_now(),
        "n_results": len(rows),
        "results": rows,
        "skipped": skipped_pairs(verdicts),
    }


def results_csv(results: Dict[str, Any]) -> str:
    """CSV of the metric rows; skipped pairs appear as rows with an empty value and the reason."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS + ["status", "reason"], lineterminator="\n")
    writer.writeheader()
    for row in results["results"]:
        out = {k: row.get(k) for k in CSV_COLUMNS}
        out["metric_params"] = json.dumps(row["metric_params"], sort_keys=True)
        writer.writerow({**out, "status": "ok", "reason": ""})
    for skip in results["skipped"]:
        writer.writerow(
            {"dataset": skip["dataset"], "model": skip["model"], "status": skip["verdict"],
             "reason": " | ".join(skip["reasons"])}
        )
    return buffer.getvalue()


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(metric_files: List[Path], verdict_files: List[Path], outdir: Path) -> Dict[str, Any]:
    """Read EVALUATE and VALIDATE JSONs and write ``benchmark_results.json`` and ``.csv`` into ``outdir``."""
    metric_docs = [json.loads(Path(p).read_text()) for p in metric_files]
    verdicts = [json.loads(Path(p).read_text()) for p in verdict_files]
    results = build_results(metric_docs, verdicts)
    outdir.mkdir(parents=True, exist_ok=True)
    _atomic_text(outdir / "benchmark_results.json", json.dumps(results, indent=2, default=str))
    _atomic_text(outdir / "benchmark_results.csv", results_csv(results))
    return results
