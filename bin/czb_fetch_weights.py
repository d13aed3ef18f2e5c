#!/usr/bin/env python3
"""FETCH_WEIGHTS: fetch one model variant's weights into a folder with a checksummed manifest."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from czbenchmarks.weights import WeightStoreError, fetch_weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--sources", required=True, help="JSON list of [uri, subfolder] pairs")
    parser.add_argument("--dest", required=True, type=Path)
    args = parser.parse_args()
    sources = [tuple(pair) for pair in json.loads(args.sources)]
    try:
        manifest = fetch_weights(sources, args.dest, extra={"model": args.model, "variant": args.variant})
    except WeightStoreError as err:
        print(f"FETCH_WEIGHTS {args.model}/{args.variant}: {err}", file=sys.stderr)
        return 2
    total = sum(f["size"] for f in manifest["files"])
    print(f"{args.model}/{args.variant}: {len(manifest['files'])} files, {total} bytes in {args.dest}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main())
