#!/usr/bin/env python3
"""CHECK_RESULTS: fail the run when results that should have been produced are missing.

Reads REPORT's ``summary.json``. The report is already published; this only sets the run's exit
status, so CI and Seqera Platform show a run with failed pairs as failed (``--allow_failures``: not).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--summary", required=True, type=Path)
    parser.add_argument("--allow_failures", action="store_true", help="exit 0 even when results are missing")
    args = parser.parse_args()
    summary = json.loads(args.summary.read_text())
    missing = summary.get("missing", [])
    if not missing:
        print(f"complete: {summary.get('produced', 0)} of {summary.get('expected', 0)} scheduled results produced")
        return 0
    lines = [f"{len(missing)} of {summary.get('expected', 0)} scheduled results are missing (see report.html):"]
    lines += [f"  - {cell['dataset']} x {cell['model']}{':' + cell['variant'] if cell.get('variant') else ''} x "
              f"{cell['task']}: {cell['reason']}" for cell in missing[:20]]
    if len(missing) > 20:
        lines.append(f"  ... and {len(missing) - 20} more")
    print("\n".join(lines), file=sys.stderr)
    return 0 if args.allow_failures else 1


if __name__ == "__main__":
    sys.exit(main())
