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
``obs['condition']``, the dataset's genes), written condition by condition so that memory does not
grow with the number of conditions. As in scGenePT, a perturbed gene the vocabulary lacks gets the
``<pad>`` token (recorded in ``run_info.pad_token_conditions``); a condition whose perturbed gene is
not among the dataset's genes is skipped and recorded (the task lists it as missing).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Set

import numpy as np

from czbenchmarks.datasets import DataType, Organism, PerturbationSingleCellDataset
from czbenchmarks.models.implementations import BaseModelImplementation
from czbenchmarks.models.scgenept import (
    AUTO_FINETUNE,
    DEFAULT_FINETUNE_DATASET,
    DEFAULT_VARIANT,
    VOCAB_FILE,
    check_conditions,
    dataset_test_conditions,
    resolve_variant,
    variant_key,
)
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator

logger = logging.getLogger("scgenept_model")

#: The column of gene symbols scGenePT's vocabulary and perturbation names use.
GENE_COLUMN = "feature_name"


class ScGenePTValidator(BaseSingleCellValidator):
    """Human Perturb-seq datasets with gene symbols in ``var['feature_name']``.

    Beyond the reference's checks, at least one test condition must be predictable: its perturbed
    genes must be among the dataset's genes (scGenePT sets the flag at that position). Conditions
    that are not are skipped at inference and reported missing by the task; genes the vocabulary
    lacks get ``<pad>``, as in scGenePT.
    """

    dataset_type = PerturbationSingleCellDataset
    available_organisms = [Organism.HUMAN]
    required_obs_keys: List[str] = []
    required_var_keys = [GENE_COLUMN]
    model_type = ModelType.SCGENEPT
    gene_identifiers = "symbols"  # its perturbation names and vocabulary are gene symbols
    gene_identifiers_reason = "scGenePT's vocabulary and perturbation names are gene symbols"
    vocabulary_file = VOCAB_FILE
    vocabulary_var_key = GENE_COLUMN
    min_vocabulary_overlap = 0.1

    @property
    def inputs(self) -> Set[DataType]:
        return {DataType.ANNDATA, DataType.METADATA}

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.PERTURBATION_PRED}

    def perturbed_gene_reasons(self, dataset: PerturbationSingleCellDataset) -> List[str]:
        """A reason when no test condition's perturbed genes are all among the dataset's genes."""
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
        check = check_conditions(conditions, adata.var[GENE_COLUMN].astype(str).tolist())
        if not conditions or check.predictable:
            return []
        shown = "; ".join(f"{c}: {why}" for c, why in list(check.skipped.items())[:10])
        more = f" (and {len(check.skipped) - 10} more)" if len(check.skipped) > 10 else ""
        return [f"none of the {len(conditions)} test conditions can be predicted: {shown}{more}"]

    def vocabulary_reasons(self, dataset: PerturbationSingleCellDataset) -> List[str]:
        """The base vocabulary-overlap rule plus :meth:`perturbed_gene_reasons`."""
        return super().vocabulary_reasons(dataset) + self.perturbed_gene_reasons(dataset)


class ScGenePT(ScGenePTValidator, BaseModelImplementation):
    model_name = "scgenept"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Pipeline mode: where run_model streams each dataset's predictions (by id of the dataset).
        self._prediction_paths: Dict[int, Path] = {}

    def create_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument(
            "--model_variant", default=variant_key(DEFAULT_VARIANT, DEFAULT_FINETUNE_DATASET),
            help=f"<variant>__<adamson|norman|{AUTO_FINETUNE}>, or a bare variant combined with --dataset_name; "
                 f"'{AUTO_FINETUNE}' picks the checkpoint fine-tuned on the dataset its --dataset_id "
                 f"(else its file name) names, else {DEFAULT_FINETUNE_DATASET}",
        )
        parser.add_argument("--dataset_name", default=DEFAULT_FINETUNE_DATASET,
                            help=f"fine-tuning dataset for a bare --model_variant (the reference's option; "
                                 f"'{AUTO_FINETUNE}' as above)")
        parser.add_argument(
            "--gene_pert", default="",
            help="conditions to predict (comma/space separated, e.g. 'CEBPB+ctrl,A+B'); "
                 "default: every test condition of the dataset",
        )
        parser.add_argument("--pool_size", "--n_control_cells", dest="pool_size", type=int, default=0,
                            help="control cells drawn (with replacement) per condition; 0: as many as the "
                                 "dataset has control cells (the reference)")
        parser.add_argument("--batch_size", type=int, default=64, help="cells per forward pass")
        parser.add_argument("--num_threads", type=int, default=0, help="CPU threads for torch (0: default)")
        return parser

    def dataset_label(self, dataset: PerturbationSingleCellDataset) -> str:
        """The name matched against the fine-tuning datasets: ``--dataset_id``, else the file name."""
        return str(getattr(self.args, "dataset_id", None) or Path(dataset.path).stem)

    def resolve_variant(self, dataset: PerturbationSingleCellDataset):
        """``(spec, fine-tune dataset, auto)`` of ``--model_variant`` / ``--dataset_name`` for ``dataset``."""
        return resolve_variant(self.args.model_variant, getattr(self.args, "dataset_name", ""),
                               self.dataset_label(dataset))

    def get_model_weights_subdir(self, dataset: PerturbationSingleCellDataset) -> str:
        spec, finetune, _ = self.resolve_variant(dataset)
        return variant_key(spec.name, finetune)

    def make_dataset(self, path: str) -> PerturbationSingleCellDataset:
        """The dataset of ``path`` holding only what the model reads (control cells, obs)."""
        from czbenchmarks.models.scgenept.inputs import ControlCellsDataset

        if not getattr(self.args, "organism", None):
            raise ValueError("--organism is required when run() is given no datasets")
        return ControlCellsDataset(path, self.args.organism, condition_key=self.args.condition_key,
                                   split_key=self.args.split_key)

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
        """Predict the requested conditions; pipeline mode streams them into the output h5ad."""
        import time

        import pandas as pd
        import torch

        from czbenchmarks.device import select_device
        from czbenchmarks.models.scgenept import (
            PredictionWriter,
            finetune_match,
            iter_predictions,
            load_scgenept,
            parse_condition,
            pool_size_for,
            requested_conditions,
        )
        from czbenchmarks.outputs import model_provenance

        device = select_device(self.args.device)
        torch.manual_seed(self.args.seed)
        if self.args.num_threads > 0:
            torch.set_num_threads(self.args.num_threads)
        spec, finetune, auto = self.resolve_variant(dataset)
        match = finetune_match(finetune, self.dataset_label(dataset))
        if match["variant_dataset_mismatch"]:
            logger.warning("scGenePT: the %s checkpoint was fine-tuned on %s, not on dataset '%s'",
                           spec.name, finetune, match["dataset_label"])
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
        for condition, genes in check.pad_token.items():
            logger.warning("scGenePT: %s: %s not in the vocabulary, predicted with the <pad> token",
                           condition, ", ".join(genes))
        if not check.predictable:
            raise ValueError(f"scGenePT: no predictable condition among {wanted[:10]}")
        pool = pool_size_for(self.args.pool_size, adata.n_obs)
        perturbed = sorted({g for c in check.predictable for g in parse_condition(c)})
        self.run_info = {
            "device": device,
            "autocast": "float16" if device == "cuda" else "off",
            "variant": spec.name,
            "finetune_dataset": finetune,
            "variant_selection": AUTO_FINETUNE if auto else "explicit",
            **match,
            "display": f"{spec.display} (fine-tuned, {finetune.capitalize()})",
            "gene_column": GENE_COLUMN,
            "conditions": list(check.predictable),
            "skipped_conditions": dict(check.skipped),
            "pad_token_conditions": {c: list(g) for c, g in check.pad_token.items()},
            "n_control_cells": int(adata.n_obs),
            "pool_size": pool,
            "pool_size_requested": int(self.args.pool_size),
            "control_sampling": "with replacement, numpy default_rng(SeedSequence([seed, crc32(condition)]))",
            "sampling_seed": self.args.seed,
            "batch_size": self.args.batch_size,
            "n_genes": len(symbols),
            "n_genes_in_vocab": sum(1 for s in symbols if s in loaded.vocab),
            "torch_threads": torch.get_num_threads(),
            **loaded.describe(),
            **self._embedding_coverage(perturbed, spec),
        }
        predictions = iter_predictions(loaded, adata.X, symbols, check.predictable, seed=self.args.seed,
                                       pool_size=pool, batch_size=self.args.batch_size)
        started = time.perf_counter()
        target = self._prediction_paths.get(id(dataset))
        if target is not None:
            with PredictionWriter(target, [str(v) for v in adata.var_names], adata.obs_names) as writer:
                for prediction in predictions:
                    writer.write(prediction)
                self.run_info["inference_seconds"] = round(time.perf_counter() - started, 3)
                writer.finish(model_provenance(dataset, self, variant=variant_key(spec.name, finetune)))
            return
        items = list(predictions)
        self.run_info["inference_seconds"] = round(time.perf_counter() - started, 3)
        names = adata.obs_names.to_numpy().astype(str)
        index = pd.MultiIndex.from_arrays(
            [[i.condition for i in items for _ in i.drawn], [n for i in items for n in names[i.drawn]]],
            names=["condition", "control_cell"])
        frame = pd.DataFrame(np.concatenate([i.rows for i in items]), index=index, columns=adata.var_names)
        dataset.set_output(self.model_type, DataType.PERTURBATION_PRED, (",".join(check.predictable), frame))

    def run(self, datasets=None):
        """As :meth:`BaseModelImplementation.run`; pipeline mode streams predictions into ``--output``.

        Only the control cells are read (:class:`~czbenchmarks.models.scgenept.inputs.ControlCellsDataset`)
        and each condition's rows go to the prediction h5ad as soon as they are predicted.
        """
        if datasets is not None:
            return super().run(datasets)
        loaded = [self.make_dataset(path) for path in self.input_paths()]
        for dataset in loaded:
            dataset.load_data()
        self._prediction_paths = {id(d): Path(out) for d, out in zip(loaded, self.output_paths(len(loaded)))}
        try:
            super().run(loaded)
        finally:
            self._prediction_paths = {}
        return None


def write_prediction(dataset: PerturbationSingleCellDataset, model: ScGenePT, path: Path) -> None:
    """Write predictions kept in memory (interactive ``run(datasets)``) in the prediction format."""
    from czbenchmarks.models.scgenept import PredictionResult, prediction_anndata
    from czbenchmarks.outputs import atomic_write_h5ad, model_provenance

    _, frame = dataset.get_output(model.model_type, DataType.PERTURBATION_PRED)
    result = PredictionResult(
        conditions=[str(c) for c in frame.index.get_level_values("condition")],
        control_cells=[str(c) for c in frame.index.get_level_values("control_cell")],
        rows=frame.to_numpy(dtype=np.float32),
    )
    provenance = model_provenance(dataset, model, variant=model.get_model_weights_subdir(dataset))
    atomic_write_h5ad(prediction_anndata(result, [str(v) for v in frame.columns], provenance), path)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ScGenePT().run()
