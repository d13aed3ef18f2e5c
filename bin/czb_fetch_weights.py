#!/usr/bin/env python3
"""FETCH_WEIGHTS: fetch one model variant's weights into a folder with a checksummed manifest.

Sources are s3:// prefixes or objects, http(s):// files, or local files and folders. The folder
appears only once complete and verified; on failure the last stderr line says why and the exit
status is 2. Retries are tuned through CZB_FETCH_ATTEMPTS, CZB_FETCH_BACKOFF and CZB_S3_MAX_ATTEMPTS.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from czbenchmarks.weights import WeightStoreError, fetch_weights


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, fetch the weights, print a one-line summary; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--sources", required=True, help="JSON list of [uri, subfolder] pairs")
    parser.add_argument("--dest", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        sources = [(str(uri), str(sub)) for uri, sub in json.loads(args.sources)]
    except (ValueError, TypeError) as err:
        print(f"FETCH_WEIGHTS {args.model}/{args.variant}: --sources is not a JSON list of [uri, subfolder] "
              f"pairs ({err})", file=sys.stderr)
        return 2
    try:
        manifest = fetch_weights(sources, args.dest, extra={"model": args.model, "variant": args.variant})
    except WeightStoreError as err:
        print(f"FETCH_WEIGHTS {args.model}/{args.variant}: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. a full disk while writing; still one line
        print(f"FETCH_WEIGHTS {args.model}/{args.variant}: {err.filename or args.dest}: {err.strerror or err}",
              file=sys.stderr)
        return 2
    total = sum(f["size"] for f in manifest["files"])
    print(f"{args.model}/{args.variant}: {len(manifest['files'])} files, {total} bytes in {args.dest} "
          f"from {manifest['source']}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main())
