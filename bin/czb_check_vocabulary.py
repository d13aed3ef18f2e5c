#!/usr/bin/env python3
"""CHECK_VOCABULARY: a dataset's genes against the vocabulary in a model's fetched weights (CPU).

Runs after FETCH_WEIGHTS, so the verdict depends only on the dataset and the weights folder: a cold
and a warm weights cache give the same answer. Writes ``pass`` or ``incompatible`` (never fails on
bad data; a crash becomes an ``error`` verdict naming the dataset).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from czbenchmarks.utils import write_atomic
from czbenchmarks.validation import ERROR, Verdict, check_vocabulary


def build_parser() -> argparse.ArgumentParser:
    """The command line CHECK_VOCABULARY passes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset_id", required=True)
    parser.add_argument("--h5ad", required=True, type=Path)
    parser.add_argument("--organism", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--model_script", required=True, type=Path)
    parser.add_argument("--model_class", required=True)
    parser.add_argument("--model_config", required=True, type=Path)
    parser.add_argument("--variant", default="")
    parser.add_argument("--weights_dir", required=True, type=Path)
    parser.add_argument("--condition_key", default="condition", help="perturbation datasets: condition column")
    parser.add_argument("--split_key", default="split", help="perturbation datasets: split column")
    parser.add_argument("--output", required=True, type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Check one pair and write ``--output``; exit 0 whatever the verdict."""
    args = build_parser().parse_args(argv)
    try:
        verdict = check_vocabulary(
            dataset_id=args.dataset_id, h5ad=args.h5ad, organism=args.organism, model=args.model,
            model_script=args.model_script, model_class=args.model_class, model_config=args.model_config,
            variant=args.variant, weights_dir=args.weights_dir,
            condition_key=args.condition_key, split_key=args.split_key,
        )
    except Exception as err:  # a validator bug must not take sibling datasets down; report it
        traceback.print_exc()
        verdict = Verdict(args.dataset_id, args.model, variant=args.variant, stage="vocabulary").fail(
            ERROR, f"dataset '{args.dataset_id}' x {args.model}: vocabulary check crashed: {type(err).__name__}: {err}")
    write_atomic(args.output, verdict.to_json())
    print(f"{args.dataset_id} x {args.model}: vocabulary {verdict.verdict}" + "".join(f"\n  - {r}" for r in verdict.reasons))
    return 0


if __name__ == "__main__":
    sys.exit(main())
