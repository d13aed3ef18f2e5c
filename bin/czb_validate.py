#!/usr/bin/env python3
"""VALIDATE: write the JSON verdict (and weights request) for one dataset x model pair (never fails on bad data).

Reads the h5ad's obs/var and a sample of X only (no model libraries, no GPU). The verdict is
``pass``, ``incompatible`` or ``error`` with one reason per problem, each naming the dataset.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from czbenchmarks.utils import write_atomic
from czbenchmarks.validation import ERROR, Verdict, validate_pair


def build_parser() -> argparse.ArgumentParser:
    """The command line VALIDATE passes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset_id", required=True)
    parser.add_argument("--h5ad", required=True, type=Path)
    parser.add_argument("--organism", default="")
    parser.add_argument("--label_key", default="")
    parser.add_argument("--batch_key", default="", help="';'-separated obs columns")
    parser.add_argument("--model", required=True)
    parser.add_argument("--model_script", required=True, type=Path)
    parser.add_argument("--model_class", required=True)
    parser.add_argument("--model_config", required=True, type=Path)
    parser.add_argument("--variant", default="")
    parser.add_argument("--needs_weights", default="true")
    parser.add_argument("--weights_mirror", default="")
    parser.add_argument("--condition_key", default="condition", help="perturbation datasets: condition column")
    parser.add_argument("--split_key", default="split", help="perturbation datasets: split column")
    parser.add_argument("--tasks", default="", help="comma list: the dataset's tasks that score this model")
    parser.add_argument("--task_catalogue", default=None, type=Path, help="conf/tasks.yaml (default: the checkout's)")
    parser.add_argument("--max_cells", type=int, default=2000)
    parser.add_argument("--counts_layer", default="",
                        help="where the raw counts are: X, raw.X or a layer name (empty: detect X, layers['counts'], "
                             "layers['raw_counts'], raw.X in that order)")
    parser.add_argument("--scvi_batch_columns", default="",
                        help="scVI batch roles: 'role=obs_column' or 'role==constant', ';'-separated")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--weights_request", default=None, type=Path,
                        help="where to write what FETCH_WEIGHTS fetches for this pair (JSON; {} without weights)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Validate one pair and write ``--output``; exit 0 whatever the verdict."""
    args = build_parser().parse_args(argv)
    try:
        verdict = validate_pair(
            dataset_id=args.dataset_id,
            h5ad=args.h5ad,
            organism=args.organism,
            label_key=args.label_key,
            batch_keys=[k for k in args.batch_key.split(";") if k],
            model=args.model,
            model_script=args.model_script,
            model_class=args.model_class,
            model_config=args.model_config,
            requested_variant=args.variant,
            needs_weights=args.needs_weights.lower() == "true",
            weights_mirror=args.weights_mirror or None,
            max_cells=args.max_cells,
            condition_key=args.condition_key or "condition",
            split_key=args.split_key or "split",
            tasks=[t for t in args.tasks.split(",") if t],
            task_catalogue=args.task_catalogue,
            counts_layer=args.counts_layer,
            scvi_batch_columns=args.scvi_batch_columns,
        )
    except Exception as err:  # a validator bug must not take sibling datasets down; report it
        traceback.print_exc()
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        verdict = Verdict(args.dataset_id, args.model).fail(
            ERROR,
            f"dataset '{args.dataset_id}' x {args.model}: validation crashed in the model's validator "
            f"({args.model_script.name}): {type(err).__name__}: {first}",
        )
    write_atomic(args.output, verdict.to_json())
    if args.weights_request is not None:
        write_atomic(args.weights_request, verdict.weights.to_json() if verdict.weights is not None else "{}")
    print(f"{args.dataset_id} x {args.model}: {verdict.verdict}" + "".join(f"\n  - {r}" for r in verdict.reasons))
    return 0


if __name__ == "__main__":
    sys.exit(main())
