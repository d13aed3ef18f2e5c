#!/usr/bin/env python3
"""FETCH_DATASET: fetch one catalog dataset's h5ad into the dataset cache (atomic, sha256 manifest)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from czbenchmarks.weights import WeightStoreError, fetch_weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="catalog name (recorded in the manifest)")
    parser.add_argument("--source", required=True, help="s3://, https:// or local path of the h5ad")
    parser.add_argument("--dest", required=True, type=Path)
    args = parser.parse_args()
    try:
        manifest = fetch_weights([(args.source, "")], args.dest, extra={"dataset": args.dataset})
    except WeightStoreError as err:
        print(f"FETCH_DATASET {args.dataset}: {err}", file=sys.stderr)
        return 2
    h5ads = [entry["path"] for entry in manifest["files"] if entry["path"].endswith(".h5ad")]
    if len(h5ads) != 1:
        print(f"FETCH_DATASET {args.dataset}: expected one .h5ad at {args.source}, found {h5ads}", file=sys.stderr)
        return 2
    size = sum(entry["size"] for entry in manifest["files"])
    print(f"{args.dataset}: {size} bytes from {args.source}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main())
