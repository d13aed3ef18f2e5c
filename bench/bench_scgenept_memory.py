#!/usr/bin/env python3
"""Benchmark scGenePT prediction + perturbation scoring: peak RSS at N and factor x N test conditions.

Each condition is predicted from every control cell (``--pool_size 0``, the reference's default), so
the prediction file has ``conditions x control cells`` rows. Before streaming, prediction held them
all (several copies) and scoring read them whole as float64, twice; now one condition's rows are
in memory at a time, so peak memory should stay flat (ratio near 1) as conditions grow.

Runs as the pipeline does, each stage a fresh process whose peak resident set size is read from
``wait4``: ``bin/scgenept_model.py`` (tiny test checkpoint, CPU) writes the prediction h5ad,
``bin/czb_evaluate.py --task perturbation`` scores it. The data are synthetic GEARS-style
datasets (``scripts/make_gears_style_dataset.py``: the tiny vocabulary's genes plus GEARS' old
symbols, which are predicted with ``<pad>``).

    python bench/bench_scgenept_memory.py [--conditions 5] [--factor 10] [--no_legacy_symbols]
    python bench/bench_scgenept_memory.py --ref <git ref>

``--ref`` measures the implementation at that commit instead (``git archive`` of ``src`` and
``bin`` into a temporary folder, same data and commands): the named baseline. Its data leave
GEARS' old symbols out, since implementations before ``<pad>`` prediction refuse them; run the
working tree with ``--no_legacy_symbols`` for the same data (the mean metrics then match). Each
invocation stays under ~3 minutes on 2 cores. Results go to
``<out>/bench_scgenept_memory[_<ref>].json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "assets" / "test" / "weights" / "scgenept" / "scgenept_go_c_gpt_concat__adamson"
VOCAB = WEIGHTS / "pretrained" / "scgpt" / "vocab.json"


def _generator():
    spec = importlib.util.spec_from_file_location("make_gears_style_dataset", ROOT / "scripts" / "make_gears_style_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measured(cmd: List[str], env: Dict[str, str]) -> Dict[str, Any]:
    """Run ``cmd``; its wall time and peak RSS (MiB, from wait4); raises on failure."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def run_stage_pair(code_root: Path, dataset: Path, work: Path, threads: int) -> Dict[str, Any]:
    """Predict and score ``dataset`` with the code under ``code_root``."""
    env = {**os.environ, "PYTHONPATH": str(code_root / "src"), "OMP_NUM_THREADS": str(threads)}
    prediction = work / f"{dataset.stem}.scgenept.h5ad"
    predict = measured([
        sys.executable, str(code_root / "bin" / "scgenept_model.py"), "--input", str(dataset), "--output", str(prediction),
        "--dataset_id", dataset.stem, "--organism", "homo_sapiens", "--weights_dir", str(WEIGHTS),
        "--seed", "0", "--device", "cpu", "--num_threads", str(threads), "--batch_size", "128",
    ], env)
    metrics = work / f"{dataset.stem}.metrics.json"
    score = measured([
        sys.executable, str(code_root / "bin" / "czb_evaluate.py"), "--task", "perturbation", "--outputs", str(prediction),
        "--dataset_ids", dataset.stem, "--datasets", str(dataset), "--model", "scgenept", "--input_kind", "prediction",
        "--output", str(metrics), "--strict",
    ], env)
    doc = json.loads(metrics.read_text())
    means = {f"{m['metric_type']}/{m['params']['subset']}": m["value"] for m in doc["metrics"]
             if m["params"].get("condition") == "MEAN"}
    return {"predict": predict, "score": score, "prediction_file_mib": round(prediction.stat().st_size / 2**20, 1),
            "mean_metrics": means}


def export_ref(ref: str, into: Path) -> Path:
    """``src`` and ``bin`` of commit ``ref`` under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src", "bin"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conditions", type=int, default=5, help="N: test conditions of the small run")
    parser.add_argument("--factor", type=int, default=10, help="the large run has factor x N conditions")
    parser.add_argument("--control_cells", type=int, default=1000)
    parser.add_argument("--genes", type=int, default=100, help="genes from the tiny vocabulary")
    parser.add_argument("--cells_per_condition", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: no OpenMP spinning on a shared machine)")
    parser.add_argument("--ref", default="", help="measure the implementation at this git ref instead")
    parser.add_argument("--no_legacy_symbols", action="store_true", help="data without GEARS' old symbols")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()

    generator = _generator()
    genes = generator.vocabulary_genes(VOCAB, args.genes)
    legacy = not (args.ref or args.no_legacy_symbols)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    name = f"ref {args.ref}" if args.ref else "working tree"
    results: Dict[str, Any] = {
        "code": name,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_1m": load},
        "params": {k: v for k, v in vars(args).items() if k != "out"}
        | {"genes_total": len(genes) + (len(generator.LEGACY_SYMBOLS) if legacy else 0), "legacy_symbols": legacy},
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench_scgenept_") as tmp:
        tmp_path = Path(tmp)
        code_root = export_ref(args.ref, tmp_path / "ref") if args.ref else ROOT
        for n in (args.conditions, args.conditions * args.factor):
            dataset = generator.build(tmp_path / f"gears_{n}.h5ad", genes, n, args.control_cells,
                                      args.cells_per_condition, seed=0, legacy_symbols=legacy)
            work = tmp_path / "work" / str(n)
            work.mkdir(parents=True, exist_ok=True)
            run = run_stage_pair(code_root, dataset, work, args.threads)
            run["rows"] = n * args.control_cells
            results["runs"][str(n)] = run
            print(f"{name}: {n:>4} conditions ({run['rows']} rows): predict {run['predict']['peak_rss_mib']} MiB "
                  f"{run['predict']['seconds']} s, score {run['score']['peak_rss_mib']} MiB "
                  f"{run['score']['seconds']} s, file {run['prediction_file_mib']} MiB", flush=True)
    small, large = (results["runs"][str(n)] for n in (args.conditions, args.conditions * args.factor))
    results["peak_rss_ratio_large_over_small"] = {
        stage: round(large[stage]["peak_rss_mib"] / small[stage]["peak_rss_mib"], 3) for stage in ("predict", "score")}
    print(json.dumps(results["peak_rss_ratio_large_over_small"]))
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"_{args.ref}" if args.ref else ""
    (args.out / f"bench_scgenept_memory{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
