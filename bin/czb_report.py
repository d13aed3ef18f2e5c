#!/usr/bin/env python3
"""REPORT: benchmark_results.json / .csv from all metrics and verdict JSONs."""

from __future__ import annotations

import argparse
from pathlib import Path

from czbenchmarks.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", nargs="*", default=[], type=Path)
    parser.add_argument("--verdicts", nargs="*", default=[], type=Path)
    parser.add_argument("--outdir", default=Path("."), type=Path)
    args = parser.parse_args()
    results = write_report(args.metrics, args.verdicts, args.outdir)
    print(f"{results['n_results']} metric rows, {len(results['skipped'])} skipped pairs")
    for skip in results["skipped"]:
        print(f"  skipped {skip['dataset']} x {skip['model']} ({skip['verdict']}): {' | '.join(skip['reasons'])}")


if __name__ == "__main__":
    main()
