#!/usr/bin/env python3
"""Benchmark: the whole pipeline (``nextflow run main.nf``) at growing cell counts, per stage.

For each ``--cells`` size it writes (or reuses) a resampled-real-counts dataset with
``bench/make_scale_dataset.py`` (30,000 genes, ~1,300 non-zeros a cell, 10 cell types, 2 donors),
a one-row samplesheet, and runs the test profile (local executor, tiny scVI checkpoint) with
``--models scvi``: VALIDATE, FETCH_WEIGHTS, RUN_MODEL (scVI), RUN_BASELINE (PCA, raw expression),
EVALUATE for every embedding task (clustering, embedding, label_prediction, integration) and the
report. Nextflow's trace (``trace.raw``: milliseconds and bytes) gives each task's wall time
(``realtime``) and peak RSS (``peak_rss``); the script writes them to
``bench/out/bench_pipeline_scale.json`` and prints a markdown table with the growth per stage
between consecutive sizes.

A monitor samples the summed RSS of the whole ``nextflow`` process tree every second and stops the
run (the whole process group) when it passes ``--rss_cap_gib`` or when the clock passes
``--deadline`` (UTC ``HH:MM``); such a run is recorded as ``stopped`` with the reason, its finished
tasks kept.

Run: ``python bench/bench_pipeline_scale.py --cells 10000 100000 --background /tmp/ct/celltypist-1.7.1-py3-none-any.whl``
(``NXF_BIN`` names the Nextflow launcher; default ``tools/nextflow``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "bench"))

#: The trace in raw units (ms, bytes); merged over the pipeline's own trace settings.
RAW_TRACE_CONFIG = "trace { raw = true }\n"


def samplesheet(path: Path, h5ad: Path) -> Path:
    """A one-dataset samplesheet for the generated h5ad (labels and batches of the PBMC source cells)."""
    path.write_text("id,h5ad,organism,label_key,batch_key,condition_key,split_key,cross_species_group,tasks\n"
                    f"scale,{h5ad},homo_sapiens,cell_type,donor_id,,,,\n")
    return path


def tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of a process and all its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_pipeline(launch: Path, sheet: Path, rss_cap: int, deadline: dt.datetime, timeout_s: int,
                 extra_args: List[str] = ()) -> dict:
    """``nextflow run main.nf -profile test --models scvi`` in ``launch``, watched; returns status and tree peak."""
    launch.mkdir(parents=True, exist_ok=True)
    extra = launch / "raw_trace.config"
    extra.write_text(RAW_TRACE_CONFIG)
    env = dict(os.environ, NXF_HOME=str(launch / ".nxf-home"), NXF_OFFLINE="true", NXF_PLUGINS_DEFAULT="false",
               NXF_ANSI_LOG="false", NXF_OPTS="-Xms256m -Xmx1g")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    nextflow = os.environ.get("NXF_BIN", str(ROOT / "tools" / "nextflow"))
    cmd = [nextflow, "run", str(ROOT / "main.nf"), "-profile", "test", "-c", str(extra), "--input", str(sheet),
           "--models", "scvi", "--outdir", str(launch / "results"), "--weights_cache", str(launch / "weights_cache"), *extra_args]
    started = time.perf_counter()
    with open(launch / "stdout.txt", "w") as log:
        proc = subprocess.Popen(cmd, cwd=launch, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state = {"peak": 0, "stopped": None}

    def watch() -> None:
        while proc.poll() is None:
            rss = tree_rss(proc.pid)
            state["peak"] = max(state["peak"], rss)
            reason = None
            if rss > rss_cap:
                reason = f"process tree RSS {rss / 2**30:.1f} GiB over the {rss_cap / 2**30:.1f} GiB cap"
            elif dt.datetime.now(dt.timezone.utc) > deadline:
                reason = f"past the deadline {deadline:%H:%M} UTC"
            elif time.perf_counter() - started > timeout_s:
                reason = f"over the {timeout_s} s timeout"
            if reason:
                state["stopped"] = reason
                os.killpg(proc.pid, signal.SIGTERM)
                time.sleep(10)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                return
            time.sleep(1.0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    proc.wait()
    watcher.join()
    return {"returncode": proc.returncode, "wall_s": round(time.perf_counter() - started, 1),
            "tree_peak_rss_bytes": state["peak"], "stopped": state["stopped"], "command": " ".join(cmd)}


def read_trace(trace: Path) -> List[Dict[str, object]]:
    """The trace rows: process (last name part), tag, status, realtime (s) and peak_rss (bytes)."""
    if not trace.exists():
        return []
    rows = []
    with open(trace) as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            realtime, peak_rss, cpu = (float(row[k]) if row.get(k) not in ("-", "", None) else None
                                       for k in ("realtime", "peak_rss", "%cpu"))
            rows.append({"process": row["process"].split(":")[-1], "tag": row.get("tag", ""), "status": row["status"],
                         "realtime_s": None if realtime is None else realtime / 1000.0, "peak_rss_bytes": peak_rss,
                         # CPU seconds: what a loaded machine inflates least
                         "cpu_s": None if realtime is None or cpu is None else realtime / 1000.0 * cpu / 100.0})
    return rows


def stage_key(row: Dict[str, object]) -> str:
    """One stage per process and tag, the dataset id dropped (the same dataset at every size)."""
    tag = str(row["tag"]).split(":", 1)[1] if ":" in str(row["tag"]) else str(row["tag"])
    return f"{row['process']} {tag}".strip()


def markdown(runs: Dict[int, dict]) -> str:
    """Per stage: wall time and peak RSS at each size, and the growth between consecutive sizes."""
    sizes = sorted(runs)
    stages: Dict[str, Dict[int, dict]] = {}
    for n in sizes:
        for row in runs[n]["trace"]:
            stages.setdefault(stage_key(row), {})[n] = row
    head = ["stage"] + [f"{n:,} cells: wall (CPU) / peak RSS" for n in sizes]
    head += [f"growth {a:,}→{b:,}: wall (CPU) / RSS" for a, b in zip(sizes, sizes[1:])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(row: dict | None) -> str:
        if row is None or row["realtime_s"] is None or row["peak_rss_bytes"] is None:
            return "—" if row is None else row["status"]
        rss = row["peak_rss_bytes"] or 0
        cpu = f" ({row['cpu_s']:.0f} CPU-s)" if row.get("cpu_s") is not None else ""
        return f"{row['realtime_s']:.1f} s{cpu} / {rss / 2**20:,.0f} MiB"

    for name in sorted(stages):
        got = stages[name]
        line = [name] + [cell(got.get(n)) for n in sizes]
        for a, b in zip(sizes, sizes[1:]):
            ra, rb = got.get(a), got.get(b)
            if ra and rb and ra["realtime_s"] and rb["realtime_s"] and ra["peak_rss_bytes"] and rb["peak_rss_bytes"]:
                cpu = (f" (CPU ×{rb['cpu_s'] / ra['cpu_s']:.1f})" if ra.get("cpu_s") and rb.get("cpu_s") else "")
                line.append(f"×{rb['realtime_s'] / ra['realtime_s']:.1f}{cpu} / ×{rb['peak_rss_bytes'] / ra['peak_rss_bytes']:.2f}")
            else:
                line.append("—")
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Generate, run and tabulate each size; results merge into ``bench/out/bench_pipeline_scale.json``."""
    from make_scale_dataset import write_scale_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/czb_pipeline_scale"),
                        help="datasets and Nextflow launch folders (several GB at 10^5 cells and up)")
    parser.add_argument("--background", type=Path, default=None, help="celltypist 1.7.1 wheel (see make_scale_dataset.py)")
    parser.add_argument("--rss_cap_gib", type=float, default=10.0, help="stop a run whose process tree passes this RSS")
    parser.add_argument("--deadline", default=None, help="UTC HH:MM after which a run is stopped")
    parser.add_argument("--timeout_s", type=int, default=3 * 3600)
    parser.add_argument("--nextflow_args", default="", help="more pipeline options, e.g. '--baselines false'")
    parser.add_argument("--table_only", action="store_true", help="only print the table of the recorded runs")
    args = parser.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    record = OUT / "bench_pipeline_scale.json"
    runs = {int(k): v for k, v in json.loads(record.read_text()).items()} if record.exists() else {}
    now = dt.datetime.now(dt.timezone.utc)
    deadline = now + dt.timedelta(days=1)
    if args.deadline:
        hour, minute = map(int, args.deadline.split(":"))
        deadline = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if not args.table_only:
        args.workdir.mkdir(parents=True, exist_ok=True)
        for n in args.cells:
            h5ad = args.workdir / f"scale_{n}.h5ad"
            generated = None
            if not h5ad.exists():
                generated = write_scale_dataset(h5ad, n, background=args.background)
                print("generated", generated, flush=True)
            launch = args.workdir / f"run_{n}"
            sheet = samplesheet(args.workdir / f"samplesheet_{n}.csv", h5ad)
            result = run_pipeline(launch, sheet, int(args.rss_cap_gib * 2**30), deadline, args.timeout_s,
                                  args.nextflow_args.split())
            result.update(cells=n, dataset=generated or {"path": str(h5ad), "bytes": h5ad.stat().st_size},
                          load_average=os.getloadavg(), date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                          trace=read_trace(launch / "results" / "pipeline_info" / "trace.txt"))
            ran = {row["process"] for row in result["trace"]}
            if result["returncode"] == 0 and not {"RUN_MODEL", "RUN_BASELINE", "EVALUATE"} <= ran:
                result["stopped"] = f"the run scheduled only {sorted(ran)} (VALIDATE rejected the dataset? see {launch}/work)"
            # Re-read before writing: another size may have been recorded meanwhile.
            runs = {int(k): v for k, v in json.loads(record.read_text()).items()} if record.exists() else {}
            runs[n] = result
            tmp = record.with_name(record.name + ".part")
            tmp.write_text(json.dumps({str(k): v for k, v in sorted(runs.items())}, indent=1))
            tmp.replace(record)
            print(f"{n} cells: rc {result['returncode']}, {result['wall_s']} s, tree peak "
                  f"{result['tree_peak_rss_bytes'] / 2**30:.2f} GiB, stopped: {result['stopped']}", flush=True)
    print(markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
