#!/usr/bin/env python3
"""BASELINE (perturbation): predict every test condition as the control cells' mean or median.

Writes a perturbation prediction h5ad (one row per test condition) scored by the perturbation task
as model ``baseline``, variant ``control_mean`` / ``control_median``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Set

from czbenchmarks.datasets import DataType, Organism, PerturbationSingleCellDataset
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator
from czbenchmarks.tasks.perturbation import BASELINE_TYPES, write_control_baseline


class ControlBaseline(BaseSingleCellValidator):
    """VALIDATE's view of the control baselines: any organism, a perturbation dataset (conditions, split)."""

    dataset_type = PerturbationSingleCellDataset
    available_organisms = list(Organism)
    required_obs_keys: List[str] = []
    required_var_keys: List[str] = []
    model_type = ModelType.BASELINE

    def __init__(self, argv=None, **_: object) -> None:
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--model_variant", default="control_mean")
        self.args, _unknown = parser.parse_known_args(argv or [])

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.PERTURBATION_PRED}

    def get_model_weights_subdir(self, dataset) -> str:
        return self.args.model_variant

    def _reasons(self, dataset) -> List[str]:
        return []  # no gene-ID rule: the control mean/median works on any gene names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, type=Path, help="perturbation dataset h5ad")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--baseline_type", "--model_variant", dest="baseline_type", required=True, choices=BASELINE_TYPES)
    parser.add_argument("--dataset_id", default="")
    parser.add_argument("--organism", default="", help="accepted for the common baseline command line; unused")
    parser.add_argument("--condition_key", default="condition")
    parser.add_argument("--split_key", default="split")
    parser.add_argument("--seed", type=int, default=42)
    # The common baseline command line; the control mean/median read X, where the perturbation task's
    # truth is read, so both sides of the comparison come from the same matrix.
    parser.add_argument("--counts_layer", default="", help="accepted for the common baseline command line; unused")
    parser.add_argument("--scvi_batch_columns", default="", help="accepted for the common baseline command line; unused")
    args = parser.parse_args()
    write_control_baseline(args.input, args.output, args.baseline_type, args.condition_key, args.split_key,
                           dataset_id=args.dataset_id, seed=args.seed)
    print(f"{args.dataset_id}: wrote {args.baseline_type} predictions to {args.output}")


if __name__ == "__main__":
    main()
