#!/usr/bin/env python3
"""scVI: map a dataset onto a pretrained (CELLxGENE Census) scVI reference and take the posterior mean.

Follows czbenchmarks' scVI model: batch = concatenated ``dataset_id``, ``assay``,
``suspension_type`` and ``donor_id``; genes aligned to the reference with
``SCVI.prepare_query_anndata``; ``SCVI.load_query_data`` without query training.
"""

from __future__ import annotations

import argparse
import logging
from typing import List, Set

from czbenchmarks.datasets import DataType, Organism, SingleCellDataset
from czbenchmarks.models.implementations import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator

logger = logging.getLogger("scvi_model")


class ScviValidator(BaseSingleCellValidator):
    """Census scVI models exist for human and mouse; the batch keys come from the CELLxGENE schema."""

    available_organisms = [Organism.HUMAN, Organism.MOUSE]
    required_obs_keys = ["dataset_id", "assay", "suspension_type", "donor_id"]
    required_var_keys: List[str] = []
    model_type = ModelType.SCVI
    requires_raw_counts = True  # scVI's likelihood is over counts

    @property
    def inputs(self) -> Set[DataType]:
        return {DataType.ANNDATA, DataType.METADATA}

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.EMBEDDING}


class SCVI(ScviValidator, BaseModelImplementation):
    model_name = "scvi"
    # X is read in row slices and only the reference's genes kept (a few hundred to 8,000 of a
    # dataset's ~30,000): the whole matrix is never in memory (bench/bench_pipeline_scale.py).
    streams_input = True

    def create_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--batch_size", type=int, default=1024)
        return parser

    def get_model_weights_subdir(self, dataset: SingleCellDataset) -> str:
        # One Census model per organism: the organism is the variant.
        return dataset.organism.name

    def _download_model_weights(self, dataset: SingleCellDataset) -> None:
        from omegaconf import OmegaConf

        from czbenchmarks.utils import sync_s3_to_local
        from czbenchmarks.weights import split_s3_uri

        config = OmegaConf.load(self.args.model_config)
        bucket, prefix = split_s3_uri(config.models[dataset.organism.name].model_uri)
        sync_s3_to_local(bucket, prefix, self.model_weights_dir)

    def run_model(self, dataset: SingleCellDataset) -> None:
        import anndata as ad
        import numpy as np
        import scvi
        import torch

        from czbenchmarks.device import select_device

        device = select_device(self.args.device)
        scvi.settings.seed = self.args.seed
        source = dataset.adata
        gene_ids = dataset.gene_ids.str.split(".").str[0]
        reference = scvi.model.SCVI.prepare_query_anndata(source, self.model_weights_dir, return_reference_var_names=True)
        columns = np.flatnonzero(np.asarray(gene_ids.isin(reference)))
        # A private matrix of the reference's genes; the dataset's own var_names stay as the user wrote them.
        query = ad.AnnData(X=reference_gene_counts(source.X, columns), obs=source.obs[self.required_obs_keys].copy())
        query.obs_names = source.obs_names
        query.var_names = gene_ids[columns]
        query.obs["batch"] = query.obs[self.required_obs_keys].astype(str).agg("".join, axis=1)
        scvi.model.SCVI.prepare_query_anndata(query, self.model_weights_dir, return_reference_var_names=False)
        model = scvi.model.SCVI.load_query_data(query, self.model_weights_dir, accelerator="cpu")
        model.is_trained = True  # zero-shot mapping, as the reference: no query training
        if device == "cuda":
            model.to_device("cuda")
        with torch.inference_mode():
            latent = model.get_latent_representation(batch_size=self.args.batch_size)
        self.run_info = {"device": device, "n_reference_genes": int(query.n_vars)}
        dataset.set_output(self.model_type, DataType.EMBEDDING, np.asarray(latent, dtype=np.float32))


def reference_gene_counts(X, columns, chunk_rows: int = 20_000):
    """CSR float32 of ``X[:, columns]``, read ``chunk_rows`` rows at a time (X in memory or backed)."""
    import numpy as np
    import scipy.sparse as sp

    blocks = []
    for start in range(0, X.shape[0], chunk_rows):
        block = X[start: start + chunk_rows]
        block = block if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
        blocks.append(sp.csr_matrix(block, dtype=np.float32)[:, columns])
    if not blocks:
        return sp.csr_matrix((0, len(columns)), dtype=np.float32)
    return sp.vstack(blocks, format="csr")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    SCVI().run()
