#!/usr/bin/env python3
"""IMPORT_EMBEDDINGS: check a user's embedding against its dataset and write it as a model output.

Bring-your-own entry (``--embeddings`` samplesheet): no inference; the embedding is scored like a
model's. Cells must be exactly the dataset's ``obs_names`` (any order); otherwise exit 1 with an
error naming the dataset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from czbenchmarks.tasks.external import import_embedding


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--embedding", required=True, type=Path, help="user h5ad holding obsm[--obsm_key]")
    parser.add_argument("--dataset", required=True, type=Path, help="the dataset h5ad it embeds")
    parser.add_argument("--dataset_id", required=True)
    parser.add_argument("--obsm_key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--organism", default="")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()
    try:
        prov = import_embedding(args.embedding, args.dataset, args.dataset_id, args.obsm_key, args.model,
                                args.output, organism=args.organism, seed=args.seed)
    except ValueError as err:
        print(f"ERROR --embeddings: {err}", file=sys.stderr)
        return 1
    print(f"{args.dataset_id} x {args.model}: imported obsm['{args.obsm_key}'] ({prov['run_info']['dims']} dims)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
