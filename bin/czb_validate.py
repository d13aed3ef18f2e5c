#!/usr/bin/env python3
"""VALIDATE: write the JSON verdict for one dataset x model pair (never fails on bad data)."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from czbenchmarks.validation import ERROR, Verdict, validate_pair


def main() -> int:
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
    parser.add_argument("--max_cells", type=int, default=2000)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()
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
        )
    except Exception as err:  # a validator bug must not take sibling datasets down; report it
        traceback.print_exc()
        verdict = Verdict(args.dataset_id, args.model).fail(
            ERROR, f"dataset '{args.dataset_id}' x {args.model}: validation crashed: {type(err).__name__}: {err}"
        )
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(verdict.to_json())
    tmp.replace(args.output)
    print(f"{args.dataset_id} x {args.model}: {verdict.verdict}" + "".join(f"\n  - {r}" for r in verdict.reasons))
    return 0


if __name__ == "__main__":
    sys.exit(main())
