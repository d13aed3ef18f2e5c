#!/usr/bin/env python3
"""scGenePT: expression after a genetic perturbation, predicted from a dataset's control cells.

Follows czbenchmarks' scGenePT model (variants ``<gene embedding>`` x fine-tuning dataset
``adamson``/``norman``; gene symbols from ``var['feature_name']``; each prediction row is a
control cell drawn with replacement, perturbation flags set on the perturbed genes). Differences:
the network is czbenchmarks' own re-implementation (:mod:`czbenchmarks.models.scgenept`), loaded
strictly from the fine-tuned checkpoint, so no GEARS download happens at run time; the model input
is the dataset's genes rather than the GEARS dataset's; the control-cell draw is seeded
(``--seed``); all requested conditions are predicted in one run (default: every test condition),
and the output is a prediction h5ad the perturbation task scores (one row per predicted cell,
``obs['condition']``, the dataset's genes).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

from czbenchmarks.datasets import DataType, Organism, PerturbationSingleCellDataset
from czbenchmarks.models.implementations import BaseModelImplementation
from czbenchmarks.models.scgenept import (
    DEFAULT_FINETUNE_DATASET,
    DEFAULT_VARIANT,
    VOCAB_FILE,
    check_conditions,
    dataset_test_conditions,
    parse_variant,
    variant_key,
)
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator

logger = logging.getLogger("scgenept_model")

#: The column of gene symbols scGenePT's vocabulary and perturbation names use.
GENE_COLUMN = "feature_name"


class ScGenePTValidator(BaseSingleCellValidator):
    """Human Perturb-seq datasets with gene symbols in ``var['feature_name']``.

    Beyond the reference's checks, every gene perturbed in a test condition must be one of the
    dataset's genes and (once the vocabulary is local) in the model's vocabulary: the perturbation
    task scores every test condition, so a condition the model cannot predict would only fail
    later, after the GPU work.
    """

    dataset_type = PerturbationSingleCellDataset
    available_organisms = [Organism.HUMAN]
    required_obs_keys: List[str] = []
    required_var_keys = [GENE_COLUMN]
    model_type = ModelType.SCGENEPT
    vocabulary_file = VOCAB_FILE
    vocabulary_var_key = GENE_COLUMN
    min_vocabulary_overlap = 0.1

    @property
    def inputs(self) -> Set[DataType]:
        return {DataType.ANNDATA, DataType.METADATA}

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.PERTURBATION_PRED}

    def perturbed_gene_reasons(self, dataset: PerturbationSingleCellDataset,
                               vocabulary: Optional[Set[str]]) -> List[str]:
        """A reason listing test conditions whose perturbed genes the model cannot place."""
        adata = dataset.adata
        if GENE_COLUMN not in adata.var.columns:
            return []
        try:
            obs = dataset.get_input(DataType.METADATA)
        except KeyError:
            obs = adata.obs
        if dataset.condition_key not in obs.columns or dataset.split_key not in obs.columns:
            return []
        conditions = dataset_test_conditions(obs, dataset.condition_key, dataset.split_key)
        check = check_conditions(conditions, adata.var[GENE_COLUMN].astype(str).tolist(), vocabulary)
        if not check.skipped:
            return []
        shown = "; ".join(f"{c}: {why}" for c, why in list(check.skipped.items())[:10])
        more = f" (and {len(check.skipped) - 10} more)" if len(check.skipped) > 10 else ""
        return [f"{len(check.skipped)} of {len(conditions)} test conditions cannot be predicted: {shown}{more}"]

    def vocabulary_reasons(self, dataset: PerturbationSingleCellDataset) -> List[str]:
        """The base vocabulary-overlap rule plus :meth:`perturbed_gene_reasons`."""
        vocabulary = self.load_vocabulary()
        reasons = super().vocabulary_reasons(dataset) if vocabulary is not None else []
        return reasons + self.perturbed_gene_reasons(dataset, vocabulary)


class ScGenePT(ScGenePTValidator, BaseModelImplementation):
    model_name = "scgenept"

    def create_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument(
            "--model_variant", default=variant_key(DEFAULT_VARIANT, DEFAULT_FINETUNE_DATASET),
            help="<variant>__<adamson|norman>, or a bare variant combined with --dataset_name",
        )
        parser.add_argument("--dataset_name", default=DEFAULT_FINETUNE_DATASET,
                            help="fine-tuning dataset for a bare --model_variant (the reference's option)")
        parser.add_argument(
            "--gene_pert", default="",
            help="conditions to predict (comma/space separated, e.g. 'CEBPB+ctrl,A+B'); "
                 "default: every test condition of the dataset",
        )
        parser.add_argument("--pool_size", type=int, default=0,
                            help="control cells drawn per condition (0: the number of control cells)")
        parser.add_argument("--batch_size", type=int, default=64, help="cells per forward pass")
        parser.add_argument("--num_threads", type=int, default=0, help="CPU threads for torch (0: default)")
        return parser

    def get_model_weights_subdir(self, dataset: PerturbationSingleCellDataset) -> str:
        spec, finetune = parse_variant(self.args.model_variant, getattr(self.args, "dataset_name", ""))
        return variant_key(spec.name, finetune)

    def _download_model_weights(self, dataset: PerturbationSingleCellDataset) -> None:
        from omegaconf import OmegaConf

        from czbenchmarks.utils import sync_s3_to_local
        from czbenchmarks.weights import split_s3_uri

        if not self.args.model_config:
            raise ValueError("standalone runs need --model_config (containers/scgenept/config.yaml)")
        config = OmegaConf.to_container(OmegaConf.load(self.args.model_config), resolve=True)
        key = self.get_model_weights_subdir(dataset)
        if key not in config["models"]:
            raise ValueError(f"Model {key} not found in config; variants: {sorted(config['models'])}")
        entry = config["models"][key]
        sources = [("", entry["model_uri"])] + list((entry.get("extra_uris") or {}).items())
        for subdir, uri in sources:
            bucket, prefix = split_s3_uri(uri)
            target = Path(self.model_weights_dir) / subdir
            target.mkdir(parents=True, exist_ok=True)
            sync_s3_to_local(bucket, prefix, str(target))

    def _embedding_coverage(self, genes: List[str], spec) -> Dict[str, Any]:
        """How many perturbed genes have a text embedding in the variant's pickle (when fetched)."""
        from czbenchmarks.safe_pickle import load_pickle

        path = Path(self.model_weights_dir) / "gene_embeddings" / spec.embedding_file
        if not path.is_file():
            return {"gene_embeddings_file": None}
        table = load_pickle(path)  # plain data only: weights may come from a mirror
        return {"gene_embeddings_file": path.name,
                "perturbed_genes_with_text_embedding": sum(1 for g in genes if g in table),
                "perturbed_genes": len(genes)}

    def run_model(self, dataset: PerturbationSingleCellDataset) -> None:
        import time

        import pandas as pd
        import torch

        from czbenchmarks.device import select_device
        from czbenchmarks.models.scgenept import (
            load_scgenept,
            parse_condition,
            predict_conditions,
            requested_conditions,
        )

        device = select_device(self.args.device)
        torch.manual_seed(self.args.seed)
        if self.args.num_threads > 0:
            torch.set_num_threads(self.args.num_threads)
        spec, finetune = parse_variant(self.args.model_variant, self.args.dataset_name)
        loaded = load_scgenept(Path(self.model_weights_dir), spec, device=device)
        adata = dataset.adata  # control cells only
        symbols = adata.var[GENE_COLUMN].astype(str).tolist()
        obs = dataset.get_input(DataType.METADATA)
        wanted = requested_conditions(self.args.gene_pert, obs, dataset.condition_key, dataset.split_key)
        check = check_conditions(wanted, symbols, loaded.vocab)
        if self.args.gene_pert and check.skipped:
            raise ValueError("; ".join(f"cannot predict {c}: {why}" for c, why in check.skipped.items()))
        for condition, why in check.skipped.items():
            logger.warning("scGenePT: skipping %s: %s", condition, why)
        if not check.predictable:
            raise ValueError(f"scGenePT: no predictable condition among {wanted[:10]}")
        started = time.perf_counter()
        result = predict_conditions(
            loaded, adata.X, adata.obs_names, symbols, check.predictable, seed=self.args.seed,
            pool_size=self.args.pool_size, batch_size=self.args.batch_size,
        )
        elapsed = time.perf_counter() - started
        perturbed = sorted({g for c in check.predictable for g in parse_condition(c)})
        self.run_info = {
            "device": device,
            "autocast": "float16" if device == "cuda" else "off",
            "variant": spec.name,
            "finetune_dataset": finetune,
            "display": f"{spec.display} (fine-tuned, {finetune.capitalize()})",
            "gene_column": GENE_COLUMN,
            "conditions": list(check.predictable),
            "skipped_conditions": dict(check.skipped),
            "n_control_cells": int(adata.n_obs),
            "pool_size": int(len(result.rows) // max(1, len(check.predictable))),
            "control_sampling": "with replacement, numpy default_rng(SeedSequence([seed, crc32(condition)]))",
            "sampling_seed": self.args.seed,
            "batch_size": self.args.batch_size,
            "n_genes": len(symbols),
            "n_genes_in_vocab": sum(1 for s in symbols if s in loaded.vocab),
            "torch_threads": torch.get_num_threads(),
            "inference_seconds": round(elapsed, 3),
            **loaded.describe(),
            **self._embedding_coverage(perturbed, spec),
        }
        index = pd.MultiIndex.from_arrays([result.conditions, result.control_cells],
                                          names=["condition", "control_cell"])
        frame = pd.DataFrame(result.rows, index=index, columns=adata.var_names)
        dataset.set_output(self.model_type, DataType.PERTURBATION_PRED, (",".join(check.predictable), frame))

    def run(self, datasets=None):
        """As :meth:`BaseModelImplementation.run`, but pipeline mode writes prediction h5ads."""
        if datasets is not None:
            return super().run(datasets)
        loaded = [self.make_dataset(path) for path in self.input_paths()]
        for dataset in loaded:
            dataset.load_data()
        super().run(loaded)
        for dataset, output in zip(loaded, self.output_paths(len(loaded))):
            write_prediction(dataset, self, Path(output))
        return None


def write_prediction(dataset: PerturbationSingleCellDataset, model: ScGenePT, path: Path) -> None:
    """Write ``model``'s predictions for ``dataset`` in the perturbation task's prediction format."""
    from czbenchmarks.models.scgenept import PredictionResult, prediction_anndata
    from czbenchmarks.outputs import atomic_write_h5ad, model_provenance

    _, frame = dataset.get_output(model.model_type, DataType.PERTURBATION_PRED)
    result = PredictionResult(
        conditions=[str(c) for c in frame.index.get_level_values("condition")],
        control_cells=[str(c) for c in frame.index.get_level_values("control_cell")],
        rows=frame.to_numpy(),
    )
    provenance = model_provenance(dataset, model, variant=model.get_model_weights_subdir(dataset))
    atomic_write_h5ad(prediction_anndata(result, [str(v) for v in frame.columns], provenance), path)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ScGenePT().run()
