#!/usr/bin/env python3
"""REPORT: benchmark_results.json / .csv and a self-contained report.html from all metrics and verdicts."""

from __future__ import annotations

import argparse
from pathlib import Path

from czbenchmarks.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", nargs="*", default=[], type=Path)
    parser.add_argument("--verdicts", nargs="*", default=[], type=Path)
    parser.add_argument("--plan", default=None, type=Path, help="plan.jsonl written by the workflow")
    parser.add_argument("--embeddings", nargs="*", default=[], type=Path, help="output h5ads for the UMAPs")
    parser.add_argument("--trace", default=None, help="Nextflow's trace.txt: why failed tasks failed (read if reachable)")
    parser.add_argument("--umap_max_cells", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--metric_catalogue", default=None, type=Path,
                        help="conf/metrics.yaml: direction and range of every metric (default: the checkout's)")
    parser.add_argument("--model_registry", default=None, type=Path,
                        help="conf/models.yaml: citations for the model cards (default: the checkout's)")
    parser.add_argument("--no_plots", action="store_true", help="HTML without plots (stub runs)")
    parser.add_argument("--outdir", default=Path("."), type=Path)
    args = parser.parse_args()
    results = write_report(args.metrics, args.verdicts, args.outdir, plan_file=args.plan,
                           embedding_files=args.embeddings, plots=not args.no_plots,
                           umap_max_cells=args.umap_max_cells, seed=args.seed,
                           trace_file=Path(args.trace) if args.trace else None,
                           metric_catalogue=args.metric_catalogue, model_registry=args.model_registry)
    print(f"{results['n_results']} metric rows, {len(results['skipped'])} skipped pairs, "
          f"{len(results['failed'])} failed evaluations")
    check = results.get("completeness")
    if check:
        state = "complete" if check["complete"] else "INCOMPLETE"
        print(f"completeness: {check['produced']}/{check['expected']} expected results ({state}); "
              f"{len(check['not_applicable'])} not applicable")
        for cell in check["missing"]:
            print(f"  missing {cell['dataset']} x {cell['model']}{':' + cell['variant'] if cell['variant'] else ''}"
                  f" x {cell['task']}: {cell['reason']}")


if __name__ == "__main__":
    main()
