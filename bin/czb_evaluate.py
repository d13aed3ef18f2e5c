#!/usr/bin/env python3
"""EVALUATE: score one model output (several for cross_species) with one task; writes a metrics JSON.

A task that cannot be scored writes a document with ``status: "error"`` and the reason and exits 0,
so that the report lists the failure next to the results; ``--strict`` exits 1 instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from czbenchmarks.tasks.evaluate import INPUT_KINDS, evaluate
from czbenchmarks.utils import write_atomic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True)
    parser.add_argument("--outputs", "--output_h5ad", dest="outputs", nargs="+", required=True, type=Path,
                        help="model/baseline output h5ad(s); the dataset h5ad for --input_kind expression")
    parser.add_argument("--dataset_ids", "--dataset_id", dest="dataset_ids", nargs="+", required=True)
    parser.add_argument("--organisms", nargs="*", default=[], help="one per output (cross_species)")
    parser.add_argument("--datasets", nargs="*", default=[], type=Path,
                        help="dataset h5ad (alignment check; perturbation truth)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--variant", default="")
    parser.add_argument("--input_kind", default="embedding", choices=INPUT_KINDS)
    parser.add_argument("--label_key", default="")
    parser.add_argument("--batch_key", default="")
    parser.add_argument("--condition_key", default="condition")
    parser.add_argument("--split_key", default="split")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, default=1,
                        help="repeat the seed-dependent parts with the seeds seed, seed+1, ... (this many)")
    parser.add_argument("--counts_layer", default="",
                        help="where the dataset keeps its counts (X, raw.X or layers/<name>; --input_kind expression)")
    parser.add_argument("--label_prediction_max_cells", type=int, default=0,
                        help="label prediction scores a stratified, seeded sample of this many cells (0: all)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the task fails")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()

    doc = evaluate(
        task=args.task, outputs=args.outputs, dataset_ids=args.dataset_ids, model=args.model,
        label_key=args.label_key, batch_key=args.batch_key.split(";")[0] if args.batch_key else "",
        condition_key=args.condition_key, split_key=args.split_key, organisms=args.organisms,
        datasets=args.datasets, variant=args.variant, input_kind=args.input_kind, seed=args.seed,
        n_seeds=args.seeds, counts_location=args.counts_layer,
        label_prediction_max_cells=args.label_prediction_max_cells,
    )
    write_atomic(args.output, json.dumps(doc, indent=2, default=str))
    name = f"{doc['dataset']} {args.model}{':' + doc['variant'] if doc['variant'] else ''} {args.task}"
    if doc["status"] == "not_applicable":
        print(f"{name}: not applicable: {doc['error']}")
        return 0
    if doc["status"] != "ok":
        print(f"{name}: FAILED: {doc['error']}", file=sys.stderr)
        return 1 if args.strict else 0
    for metric in doc["metrics"]:
        value = "n/a" if metric["value"] is None else f"{metric['value']:.4f}"
        spread = ""
        if metric.get("interval"):
            spread = f" [{metric['interval']['low']:.4f}, {metric['interval']['high']:.4f}]"
        print(f"{name} {metric['metric_type']} {json.dumps(metric['params'], sort_keys=True)} = {value}{spread}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
