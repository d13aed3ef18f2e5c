#!/usr/bin/env python3
"""EVALUATE: score one model output with one task; writes a metrics JSON."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from czbenchmarks.constants import EMBEDDED_OBS_KEY
from czbenchmarks.outputs import read_embedding
from czbenchmarks.provenance import software_versions
from czbenchmarks.tasks.embedding_tasks import run_embedding_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output_h5ad", required=True, type=Path, help="model or baseline output")
    parser.add_argument("--task", required=True)
    parser.add_argument("--dataset_id", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--label_key", required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()

    obs, embedding, provenance = read_embedding(args.output_h5ad)
    embedded = obs[EMBEDDED_OBS_KEY].to_numpy() if EMBEDDED_OBS_KEY in obs.columns else None
    result = run_embedding_task(args.task, obs, embedding, args.label_key, seed=args.seed, embedded=embedded)
    result.update(
        dataset=args.dataset_id,
        model=args.model,
        model_type=provenance.get("model_type", ""),
        variant=provenance.get("variant") or "",
        provenance=provenance,
        evaluation_software=software_versions(),
    )
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    tmp.replace(args.output)
    for metric in result["metrics"]:
        print(f"{args.dataset_id} {args.model} {args.task} {metric['metric_type']} = {metric['value']:.4f}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
