"""REPORT: one table of every dataset x model x task x metric, the pairs that did not run, completeness.

Schema of ``benchmark_results.json``: see docs/output.md (``schema_version`` below).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .provenance import utc_now
from .report_cost import cost_per_model, cost_table, last_attempts
from .report_scores import MetricSpec, load_metric_catalogue, ranking

#: Where the model registry lives in a checkout (citations for the model cards).
DEFAULT_MODEL_REGISTRY = Path(__file__).resolve().parents[2] / "conf" / "models.yaml"

#: Bump when the shape of benchmark_results.json changes; documented in docs/output.md.
RESULTS_SCHEMA_VERSION = "4.0"

CSV_COLUMNS = [
    "dataset", "model", "model_type", "variant", "task", "metric", "value", "metric_params", "computation", "task_params",
    "seed", "n_cells_scored", "weights_sha256", "software",
]
#: Added in schema 4.0, after ``status, reason`` so earlier columns keep their positions.
CSV_EXTRA_COLUMNS = ["values", "ci_low", "ci_high", "ci_level", "scaled_score"]
#: Above this share of missing cells per model or dataset, the completeness check flags it (Open Problems' QC).
MAX_MISSING_SHARE = 0.10


def _weights_digest(provenance: dict[str, Any]) -> str:
    """``path=sha256`` of every weight file; multi-dataset rows (cross-species) list each dataset's, prefixed."""
    if provenance.get("parts"):
        return ";".join(f"{dataset}:{entry}" for dataset, part in sorted(provenance["parts"].items())
                        for entry in _weights_digest(part).split(";") if entry)
    files = (provenance.get("weights") or {}).get("files") or {}
    return ";".join(f"{path}={digest}" for path, digest in sorted(files.items()))


def provenance_record(doc: dict[str, Any]) -> dict[str, Any]:
    """What one EVALUATE document says about where its numbers come from: the output's provenance
    (model, variant, weights, seed, run info) and the software of the model and evaluation processes."""
    provenance = doc.get("provenance", {}) or {}
    return {
        "provenance": provenance,
        "software": {**(provenance.get("software") or {}),
                     **{f"evaluate:{k}": v for k, v in (doc.get("evaluation_software") or {}).items()}},
    }


def provenance_id(record: dict[str, Any]) -> str:
    """A content address for a provenance record: rows from the same output and software share it."""
    text = json.dumps(record, sort_keys=True, default=str)
    return "p" + hashlib.sha256(text.encode()).hexdigest()[:12]


def metric_rows(metric_docs: Iterable[dict[str, Any]],
                records: dict[str, dict[str, Any]] | None = None,
                catalogue: dict[str, MetricSpec] | None = None) -> list[dict[str, Any]]:
    """Flatten successful EVALUATE documents into one row per metric, sorted for stable output.

    Each row names its provenance by ``provenance_id``; the record itself is stored once, in
    ``records`` (``benchmark_results.json``'s top-level ``provenance``), not copied into every row.
    ``values`` (one per seed) and ``interval`` pass through when EVALUATE repeated the run over seeds.
    A value at the worst end of its metric's range gets the catalogue's ``at_worst`` note when EVALUATE
    gave none (e.g. cross-species entropy 0: no neighbour from another species).
    """
    catalogue = catalogue or {}
    rows = []
    records = {} if records is None else records
    for doc in metric_docs:
        if doc.get("status", "ok") != "ok":
            continue
        provenance = doc.get("provenance", {}) or {}
        record = provenance_record(doc)
        pid = provenance_id(record)
        records.setdefault(pid, record)
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
                    # How the value was computed (exact / approximate kNN / sampled silhouette, recall, CI).
                    "computation": metric.get("computation", {}),
                    "note": metric.get("note", "") or _bound_note(catalogue.get(metric["metric_type"]), metric["value"]),
                    "values": metric.get("values"),
                    "interval": metric.get("interval"),
                    "seed": doc.get("seed"),
                    "seeds": doc.get("seeds"),
                    "n_cells_scored": doc.get("n_cells_scored"),
                    "task_params": doc.get("params", {}),
                    "weights_sha256": _weights_digest(provenance),
                    "provenance_id": pid,
                }
            )
    rows.sort(key=lambda r: (r["dataset"], r["task"], r["model"] == "baseline", r["model"], r["variant"], r["metric"],
                             json.dumps(r["metric_params"], sort_keys=True)))
    return rows


def _bound_note(spec: MetricSpec | None, value: Any) -> str:
    """The catalogue's explanation for a value at the worst end of its metric's range."""
    if spec is None or not spec.at_worst or value is None or spec.worst is None:
        return ""
    return spec.at_worst if abs(float(value) - spec.worst) < 1e-9 else ""


def skipped_pairs(verdicts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every dataset x model pair whose verdict was not ``pass``, with the reasons."""
    skipped = [
        {"dataset": v["dataset"], "model": v["model"], "verdict": v["verdict"], "reasons": v["reasons"]}
        for v in verdicts
        if v["verdict"] != "pass"
    ]
    return sorted(skipped, key=lambda s: (s["dataset"], s["model"]))


def failed_tasks(metric_docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """EVALUATE runs that could not score (``status: error``), with the error."""
    return sorted(
        ({"dataset": d["dataset"], "model": d["model"], "variant": d.get("variant", ""), "task": d["task"],
          "error": d.get("error", "")} for d in metric_docs if d.get("status", "ok") != "ok"),
        key=lambda f: (f["dataset"], f["model"], f["variant"], f["task"]),
    )


def read_plan(path: Path | None) -> dict[str, Any]:
    """The workflow's plan (JSON lines): the run, its datasets and models, every pair it considered
    and every cell it scheduled or found not applicable (see docs/output.md)."""
    plan: dict[str, Any] = {"run": {}, "datasets": [], "models": [], "pairs": [], "cells": []}
    if not path:
        return plan
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        kind = entry.pop("kind", "")
        if kind == "run":
            plan["run"] = entry
        elif kind in ("dataset", "model", "pair", "cell"):
            plan[f"{kind}s"].append(entry)
    plan["datasets"].sort(key=lambda d: d["id"])
    return plan


CellKey = tuple[str, str, str, str]
#: Gate stages in the order they decide; a later stage's verdict on a cell overrides an earlier one.
STAGE_ORDER = {"validate": 0, "group": 0, "vocabulary": 1}


def _key(cell: dict[str, Any]) -> CellKey:
    return (cell["dataset"], cell["model"], cell.get("variant", "") or "", cell["task"])


def planned_cells(plan: dict[str, Any]) -> dict[CellKey, dict[str, Any]]:
    """Every cell of the plan with its final gate status (``scheduled`` or ``not_applicable``)."""
    cells: dict[CellKey, dict[str, Any]] = {}
    for cell in sorted(plan.get("cells", []), key=lambda c: STAGE_ORDER.get(c.get("stage", "validate"), 0)):
        cells[_key(cell)] = cell
    return cells


@dataclass
class FailedTask:
    """A task Nextflow ran and let go after its last attempt (from the trace)."""

    process: str
    tag: str
    exit: str
    attempt: str
    reason: str

    def relates_to(self, cell: dict[str, Any]) -> bool:
        """Did this task's failure keep ``cell`` from being produced?"""
        parts = self.tag.split(":")
        variants = set((cell.get("variant") or "").split("+")) | {""}
        datasets = cell.get("datasets") or [cell["dataset"]]
        if self.process == "FETCH_WEIGHTS":
            model, _, variant = self.tag.partition("/")
            return model == cell["model"] and variant in variants
        if self.process == "EVALUATE":
            return self.tag == f"{cell['dataset']}:{cell['model']}:{cell.get('variant') or 'default'}:{cell['task']}"
        if len(parts) < 2 or parts[0] not in datasets or parts[1] != cell["model"]:
            return False
        return len(parts) < 3 or parts[2] in variants


def _log_tail(workdir: str, lines: int = 6, limit: int = 600) -> str:
    """The last meaningful lines of a task's stderr (``.command.err``), when its work dir is reachable."""
    if not workdir:
        return ""
    for name in (".command.err", ".command.log"):
        path = Path(workdir) / name
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        kept = [line.rstrip() for line in text.splitlines() if line.strip()]
        if kept:
            return " | ".join(kept[-lines:])[-limit:]
    return ""


def failed_from_trace(trace: Path | None) -> list[FailedTask]:
    """Tasks whose last attempt failed, from Nextflow's trace (empty when it cannot be read)."""
    last = last_attempts(trace)
    failed = []
    for (process, tag), row in sorted(last.items()):
        if row.get("status") not in ("FAILED", "ABORTED"):
            continue
        tail = _log_tail(row.get("workdir", ""))
        exit_code = row.get("exit", "-")
        why = {"137": "killed (out of memory, or by the scheduler)", "143": "terminated (time limit, or cancelled)",
               "139": "segmentation fault", "134": "aborted"}.get(exit_code, "")
        reason = f"{process} failed (exit {exit_code}, attempt {row.get('attempt') or '?'})"
        reason += f", {why}" if why else ""
        reason += f": {tail}" if tail else f"; see {row.get('workdir', '')}/.command.err"
        failed.append(FailedTask(process, tag, exit_code, str(row.get("attempt") or ""), reason))
    return failed


def completeness(
    plan: dict[str, Any], metric_docs: list[dict[str, Any]], failed: Sequence[FailedTask] = (),
) -> dict[str, Any]:
    """The scheduled cells against what came back: produced, not applicable (why) and missing (why).

    ``complete`` means every applicable cell was produced. The cells are the workflow's own plan,
    so nothing here re-derives which task scores which model.
    """
    cells = planned_cells(plan)
    docs = {_key(doc): doc for doc in metric_docs}
    produced: list[dict[str, Any]] = []
    not_applicable: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []

    def identity(cell: dict[str, Any]) -> dict[str, Any]:
        return {k: cell.get(k, "") for k in ("dataset", "model", "variant", "task")}

    for key, cell in sorted(cells.items()):
        if cell.get("status") == "not_applicable":
            not_applicable.append({**identity(cell), "reason": cell.get("reason", "")})
            continue
        doc = docs.get(key)
        if doc is not None and doc.get("status", "ok") == "ok":
            produced.append(identity(cell))
        elif doc is not None and doc.get("status") == "not_applicable":
            not_applicable.append({**identity(cell), "reason": doc.get("error", "")})
        elif doc is not None:
            missing.append({**identity(cell), "reason": f"evaluation failed: {doc.get('error', 'unknown error')}"})
        else:
            causes = [f.reason for f in failed if f.relates_to(cell)]
            if cell.get("reason"):  # the gate found the dataset broken (verdict error)
                reason = f"dataset error: {cell['reason']}"
            elif causes:
                reason = "; ".join(causes)
            else:
                reason = ("no result: an upstream task failed or did not run "
                          "(see pipeline_info/trace.txt)")
            missing.append({**identity(cell), "reason": reason})

    # A pair the workflow considered but that no gate stage decided: its VALIDATE failed. Pairs are
    # told apart by registry entry (every baseline is model 'baseline').
    decided = {(d, c.get("entry") or c["model"]) for c in plan.get("cells", [])
               for d in c.get("datasets") or [c["dataset"]]}
    for pair in plan.get("pairs", []):
        entry = pair.get("entry") or pair["model"]
        if (pair["dataset"], entry) in decided:
            continue
        variant = entry if pair["model"] == "baseline" else ""
        cell = {"dataset": pair["dataset"], "model": pair["model"], "variant": variant, "task": "*"}
        causes = [f.reason for f in failed if f.process == "VALIDATE" and f.relates_to(cell)]
        missing.append({**cell, "reason": "; ".join(causes) or "VALIDATE did not finish (see pipeline_info/trace.txt)"})

    expected = produced + missing
    flags = []
    for field_name in ("model", "dataset"):
        for value in sorted({c[field_name] for c in expected}):
            total = sum(1 for c in expected if c[field_name] == value)
            lost = sum(1 for c in missing if c[field_name] == value)
            if total and lost / total > MAX_MISSING_SHARE:
                flags.append(f"{field_name} '{value}': {lost} of {total} expected results missing ({lost / total:.0%})")
    return {
        "expected": len(expected),
        "produced": len(produced),
        "produced_cells": produced,
        "not_applicable": not_applicable,
        "missing": missing,
        "complete": not missing,
        "flags": flags,
        "failed_tasks": [asdict(f) for f in failed],
    }


def load_registry(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The model registry (``conf/models.yaml``) as entry -> fields; empty when it cannot be read."""
    import yaml

    source = Path(path) if path else DEFAULT_MODEL_REGISTRY
    if not source.is_file():
        return {}
    return dict((yaml.safe_load(source.read_text()) or {}).get("models") or {})


def model_cards(rows: list[dict[str, Any]], records: dict[str, dict[str, Any]], plan_models: list[dict[str, Any]],
                cost: list[dict[str, Any]], registry: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model (baselines per registry entry): variants, weights checksums per dataset, precision,
    container (as the trace recorded it, else the registry's image) and citation."""
    from .report_scores import model_label

    cards: dict[str, dict[str, Any]] = {}
    for row in rows:
        label = model_label(row)
        card = cards.setdefault(label, {"label": label, "model": row["model"], "model_type": row.get("model_type", ""),
                                        "variants": set(), "weights": {}, "precision": set(), "containers": set()})
        card["variants"].add(row.get("variant") or "")
        if row.get("weights_sha256"):
            card["weights"][row["dataset"]] = row["weights_sha256"]
        prov = (records.get(row.get("provenance_id", "")) or {}).get("provenance") or {}
        for part in [prov, *(prov.get("parts") or {}).values()]:
            info = part.get("run_info") or {}
            precision = part.get("precision") or info.get("precision")
            if not precision and "autocast" in info:  # earlier Geneformer outputs: no autocast = float32
                precision = info["autocast"] or "float32"
            if precision:
                card["precision"].add(str(precision))
    for row in cost:
        if row["label"] in cards and row["container"]:
            cards[row["label"]]["containers"].add(row["container"])
    out = []
    for _label, card in sorted(cards.items(), key=lambda item: (item[0].startswith("BASELINE"), item[0])):
        # A baseline's registry entry is its variant; a model's is its name.
        entry = min(card["variants"]) if card["model"] == "baseline" else card["model"]
        planned = [m for m in plan_models if (m.get("entry") or m.get("name")) == entry]
        if not card["containers"]:
            card["containers"] = {m.get("image") or m.get("container") for m in planned if m.get("image") or m.get("container")}
        if not card["containers"] and (registry.get(entry) or {}).get("container"):
            card["containers"] = {registry[entry]["container"]}
        out.append({**card, "variants": sorted(card["variants"]), "precision": sorted(card["precision"]),
                    "containers": sorted(card["containers"]), "weights": dict(sorted(card["weights"].items())),
                    "citation": str((registry.get(entry) or {}).get("citation") or "")})
    return out


def build_results(
    metric_docs: list[dict[str, Any]], verdicts: list[dict[str, Any]], plan: dict[str, Any] | None = None,
    failed: Sequence[FailedTask] = (), catalogue: dict[str, MetricSpec] | None = None,
    trace_rows: dict[tuple[str, str], dict[str, str]] | None = None, registry: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``benchmark_results.json`` document (``catalogue``: conf/metrics.yaml, default the checkout's;
    ``trace_rows``: :func:`.report_cost.last_attempts` of the trace, for the cost table)."""
    from .provenance import software_versions

    plan = plan or {"run": {}, "datasets": [], "models": [], "pairs": [], "cells": []}
    catalogue = load_metric_catalogue() if catalogue is None else catalogue
    records: dict[str, dict[str, Any]] = {}
    rows = metric_rows(metric_docs, records, catalogue)
    results = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "czbenchmarks_nf_version": __version__,
        "generated": utc_now(),
        "run": plan.get("run", {}),
        "datasets": plan.get("datasets", []),
        "models": plan.get("models", []),
        "n_results": len(rows),
        "results": rows,
        "provenance": dict(sorted(records.items())),
        "skipped": skipped_pairs(verdicts),
        "failed": failed_tasks(metric_docs),
        "completeness": completeness(plan, metric_docs, failed) if plan.get("datasets") else None,
        "ranking": ranking(rows, catalogue),
        "metrics_catalogue": {name: {"direction": spec.direction, "range": list(spec.range),
                                     "description": spec.description, "tasks": list(spec.tasks),
                                     **({"czbenchmarks": spec.czbenchmarks} if spec.czbenchmarks else {}),
                                     **({"at_worst": spec.at_worst} if spec.at_worst else {})}
                              for name, spec in catalogue.items()},
        "report_software": software_versions(),
    }
    cost = cost_table(trace_rows or {}, results)
    results["cost"] = {"outputs": cost, "per_model": cost_per_model(cost)}
    results["model_cards"] = model_cards(rows, records, plan.get("models", []), cost,
                                         load_registry() if registry is None else registry)
    return results


def results_csv(results: dict[str, Any]) -> str:
    """CSV of the metric rows, then one row per missing result (empty value, status and reason).

    Schema 4.0 appends ``values`` (JSON list, one per seed), ``ci_low``, ``ci_high``, ``ci_level`` (the
    metric's interval) and ``scaled_score`` (headline rows; see the ``ranking`` section)."""
    from .report_scores import headline, metric_label

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS + ["status", "reason"] + CSV_EXTRA_COLUMNS,
                            lineterminator="\n")
    writer.writeheader()
    records = results.get("provenance") or {}
    scaled = {(s["dataset"], s["task"], s["model"], s["variant"], s["metric_label"]): s["scaled"]
              for s in (results.get("ranking") or {}).get("scaled", [])}
    for row in results["results"]:
        out = {k: row.get(k) for k in CSV_COLUMNS}
        out["software"] = (records.get(row.get("provenance_id", "")) or {}).get("software", {})
        for key in ("metric_params", "computation", "task_params", "software"):
            out[key] = json.dumps(out.get(key) or {}, sort_keys=True)
        interval = row.get("interval") or {}
        out.update({"values": json.dumps(row["values"]) if row.get("values") else "",
                    "ci_low": interval.get("low"), "ci_high": interval.get("high"), "ci_level": interval.get("level"),
                    "scaled_score": scaled.get((row["dataset"], row["task"], row["model"], row.get("variant", ""),
                                                metric_label(row))) if headline(row) else None})
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


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The small ``summary.json``: counts and every missing cell (CHECK_RESULTS and Seqera Platform read it)."""
    check = results.get("completeness") or {}
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "complete": bool(check.get("complete", not results.get("failed"))),
        "expected": check.get("expected", 0),
        "produced": check.get("produced", 0),
        "not_applicable": len(check.get("not_applicable", [])),
        "missing": check.get("missing", []),
        "failed_tasks": check.get("failed_tasks", []),
        "n_results": results.get("n_results", 0),
        # The ranking at a glance (overall scaled score, see benchmark_results.json's ``ranking``).
        "ranking": [{"rank": m["rank"], "model": m["label"], "overall": m["overall"], "n_tasks": m["n_tasks"]}
                    for m in (results.get("ranking") or {}).get("models", [])],
    }


def write_report(
    metric_files: list[Path], verdict_files: list[Path], outdir: Path, plan_file: Path | None = None,
    embedding_files: list[Path] | None = None, html: bool = True, plots: bool = True,
    umap_max_cells: int = 5000, seed: int = 42, trace_file: Path | None = None,
    metric_catalogue: Path | None = None, model_registry: Path | None = None,
) -> dict[str, Any]:
    """Read EVALUATE/VALIDATE JSONs, the plan and the trace; write ``benchmark_results.json``, ``.csv``,
    ``summary.json`` and ``report.html``. ``metric_catalogue`` / ``model_registry``: conf/metrics.yaml
    and conf/models.yaml (default: the checkout's)."""
    from .utils import write_atomic

    metric_docs = [json.loads(Path(p).read_text()) for p in metric_files]
    verdicts = [json.loads(Path(p).read_text()) for p in verdict_files]
    results = build_results(metric_docs, verdicts, read_plan(plan_file), failed_from_trace(trace_file),
                            catalogue=load_metric_catalogue(metric_catalogue), trace_rows=last_attempts(trace_file),
                            registry=load_registry(model_registry))
    outdir.mkdir(parents=True, exist_ok=True)
    write_atomic(outdir / "benchmark_results.json", json.dumps(results, indent=2, default=str))
    write_atomic(outdir / "benchmark_results.csv", results_csv(results))
    write_atomic(outdir / "summary.json", json.dumps(summary(results), indent=2))
    if html:
        from .report_html import render_report

        write_atomic(outdir / "report.html", render_report(
            results, embedding_files or [], plots=plots, umap_max_cells=umap_max_cells, seed=seed))
    return results
