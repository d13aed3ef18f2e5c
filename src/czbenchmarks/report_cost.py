"""Cost beside quality: what each model x dataset output cost, from Nextflow's trace and the output's provenance.

Per output (the process that made it: RUN_MODEL, RUN_BASELINE or IMPORT_EMBEDDINGS, last attempt):
wall time (``realtime``), CPU hours (``%cpu`` x ``realtime``), peak memory (``peak_rss``), the
container it ran in (``container``), GPU peak memory when the output's provenance records
``gpu_peak_memory`` (bytes), and cells per second (the output's cells over the wall time).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

#: Processes whose task made a model's or baseline's output (tag ``dataset:model[:variant]``).
OUTPUT_PROCESSES = ("RUN_MODEL", "RUN_BASELINE", "IMPORT_EMBEDDINGS")
#: Trace statuses whose resource figures describe a finished task (CACHED: from the run that made it).
FINISHED = ("COMPLETED", "CACHED")

_DURATION_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: Nextflow's MemoryUnit prints powers of 1024 with these suffixes.
_MEMORY_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5}


def parse_duration(text: str | None) -> float | None:
    """Seconds from a trace duration (``1h 2m 3s``, ``46s``, ``120ms``, ``1.5s``); ``None`` for ``-`` or empty."""
    text = (text or "").strip()
    if not text or text == "-":
        return None
    parts = re.findall(r"([\d.]+)\s*(ms|s|m|h|d)\b", text)
    if not parts:
        try:
            return float(text) / 1000.0  # raw trace values are milliseconds
        except ValueError:
            return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_memory(text: Any) -> float | None:
    """Bytes from a trace memory field (``1.1 GB``, ``169 MB``, ``0``); ``None`` for ``-`` or empty."""
    if isinstance(text, (int, float)):
        return float(text)
    text = (text or "").strip()
    if not text or text == "-":
        return None
    match = re.fullmatch(r"([\d.]+)\s*([KMGTP]?B)?", text)
    if not match:
        return None
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2) or "B"]


def parse_percent(text: str | None) -> float | None:
    """``20.9%`` -> 20.9 (percent of one core); ``None`` for ``-`` or empty."""
    text = (text or "").strip().rstrip("%")
    try:
        return float(text)
    except ValueError:
        return None


def last_attempts(trace: Path | str | None) -> dict[tuple[str, str], dict[str, str]]:
    """(process short name, tag) -> the trace row of its last attempt (empty when the trace cannot be read)."""
    if not trace or not Path(trace).is_file():
        return {}
    last: dict[tuple[str, str], dict[str, str]] = {}
    with open(trace, newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            process = (row.get("process") or "").rsplit(":", 1)[-1]
            key = (process, row.get("tag") or "")
            attempt = int(row.get("attempt") or 0) if str(row.get("attempt") or "").isdigit() else 0
            if key not in last or attempt >= int(last[key].get("attempt") or 0):
                last[key] = {**row, "process": process}
    return last


def _provenance_of(records: dict[str, dict[str, Any]], dataset: str, model: str, variant: str) -> dict[str, Any]:
    for record in records.values():
        prov = record.get("provenance") or {}
        if prov.get("dataset") == dataset and prov.get("model") == model and (prov.get("variant") or "") == variant:
            return prov
    return {}


def gpu_peak_memory(provenance: dict[str, Any]) -> float | None:
    """Bytes of GPU memory the output's model process peaked at, where its provenance records it."""
    for source in (provenance, provenance.get("run_info") or {}):
        if source.get("gpu_peak_memory") is not None:
            return parse_memory(source["gpu_peak_memory"])
    return None


def cost_table(trace_rows: dict[tuple[str, str], dict[str, str]], results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model x dataset output the trace saw finish: wall time, CPU hours, peak memory,
    GPU peak memory, cells per second, container, and the EVALUATE wall time spent scoring it."""
    records = results.get("provenance") or {}
    n_cells_scored = {(r["dataset"], r["model"], r.get("variant") or ""): r.get("n_cells_scored") for r in results["results"]}
    evaluate: dict[tuple[str, str, str], float] = {}
    for (process, tag), row in trace_rows.items():
        parts = tag.split(":")
        if process == "EVALUATE" and len(parts) >= 4 and row.get("status") in FINISHED:
            key = (parts[0], parts[1], "" if parts[2] == "default" else parts[2])
            evaluate[key] = evaluate.get(key, 0.0) + (parse_duration(row.get("realtime")) or 0.0)
    table = []
    for (process, tag), row in sorted(trace_rows.items(), key=lambda item: item[0][1]):
        if process not in OUTPUT_PROCESSES or row.get("status") not in FINISHED:
            continue
        dataset, model, *rest = tag.split(":") + [""]
        variant = rest[0] if rest else ""
        prov = _provenance_of(records, dataset, model, variant)
        wall = parse_duration(row.get("realtime"))
        cpu = parse_percent(row.get("%cpu"))
        n_cells = prov.get("n_cells") or n_cells_scored.get((dataset, model, variant))
        container = (row.get("container") or "").strip()
        table.append({
            "dataset": dataset, "model": model, "variant": variant,
            "label": f"BASELINE:{variant}" if model == "baseline" else model, "process": process,
            "wall_seconds": wall,
            "cpu_hours": None if wall is None or cpu is None else cpu / 100.0 * wall / 3600.0,
            "peak_rss_bytes": parse_memory(row.get("peak_rss")),
            "gpu_peak_memory_bytes": gpu_peak_memory(prov),
            "n_cells": n_cells,
            "cells_per_second": n_cells / wall if n_cells and wall else None,
            "evaluate_wall_seconds": evaluate.get((dataset, model, variant)),
            "container": "" if container == "-" else container,
            "status": row.get("status", ""),
        })
    return table


def cost_per_model(cost: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model label: total wall time and CPU hours over its outputs, largest peak memory."""
    totals: dict[str, dict[str, Any]] = {}
    for row in cost:
        entry = totals.setdefault(row["label"], {"wall_seconds": 0.0, "cpu_hours": 0.0, "peak_rss_bytes": None,
                                                 "n_outputs": 0})
        entry["n_outputs"] += 1
        entry["wall_seconds"] += row["wall_seconds"] or 0.0
        entry["cpu_hours"] += row["cpu_hours"] or 0.0
        if row["peak_rss_bytes"] is not None:
            entry["peak_rss_bytes"] = max(entry["peak_rss_bytes"] or 0.0, row["peak_rss_bytes"])
    return totals
