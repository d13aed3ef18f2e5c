#!/usr/bin/env python3
"""scVI: map a dataset onto a pretrained (CELLxGENE Census) scVI reference and take the posterior mean.

Follows czbenchmarks' scVI model: batch = concatenated ``dataset_id``, ``assay``,
``suspension_type`` and ``donor_id``; genes aligned to the reference with
``SCVI.prepare_query_anndata``; ``SCVI.load_query_data`` without query training.

Batch roles (samplesheet column ``scvi_batch_columns``, passed as ``--scvi_batch_columns``): a
dataset whose obs lacks the CELLxGENE columns says which columns play those roles, or gives a
constant: ``dataset_id=sample;assay==10x 3' v3;suspension_type==cell;donor_id=donor``
(``role=column`` reads an obs column, ``role==value`` a constant for every cell; unnamed roles read
the obs column of their own name). The roles used are recorded in provenance. Batch values the
reference model never saw are what every new dataset brings (its ``dataset_id`` is new):
scvi-tools' ``load_query_data`` appends them to the batch categories (untrained decoder columns);
the Census models were trained with ``encode_covariates=False``, so the encoder, and hence the
latent this model outputs, does not read the batch. How many batch values are unseen is recorded.
"""

from __future__ import annotations

import argparse
import logging
from typing import Dict, List, Set, Tuple

from czbenchmarks.datasets import DataType, Organism, SingleCellDataset
from czbenchmarks.models.implementations import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator

logger = logging.getLogger("scvi_model")

#: The obs columns the Census scVI models concatenate into their batch key, in order.
BATCH_ROLES = ("dataset_id", "assay", "suspension_type", "donor_id")


def parse_batch_roles(spec: str) -> Dict[str, Tuple[str, str]]:
    """``"dataset_id=sample;assay==10x 3' v3"`` -> role -> ("column", name) or ("constant", value).

    Roles not named read the obs column of their own name. Raises ``ValueError`` for an unknown
    role or an entry without ``=``.
    """
    roles: Dict[str, Tuple[str, str]] = {role: ("column", role) for role in BATCH_ROLES}
    for item in (part.strip() for part in str(spec or "").split(";")):
        if not item:
            continue
        role, sep, value = item.partition("=")
        role = role.strip()
        if not sep or role not in BATCH_ROLES:
            raise ValueError(f"scvi_batch_columns: '{item}' is not role=column or role==value "
                             f"(roles: {', '.join(BATCH_ROLES)})")
        if value.startswith("="):
            roles[role] = ("constant", value[1:])
        else:
            roles[role] = ("column", value.strip())
    return roles


def describe_batch_roles(roles: Dict[str, Tuple[str, str]]) -> str:
    """``dataset_id: obs['sample']; assay: constant "10x 3' v3"`` (for notes and provenance)."""
    return "; ".join(f"{role}: obs['{value}']" if kind == "column" else f'{role}: constant "{value}"'
                     for role, (kind, value) in roles.items())


class ScviValidator(BaseSingleCellValidator):
    """Census scVI models exist for human and mouse; the batch keys come from the CELLxGENE schema."""

    available_organisms = [Organism.HUMAN, Organism.MOUSE]
    required_obs_keys = list(BATCH_ROLES)
    required_var_keys: List[str] = []
    model_type = ModelType.SCVI
    requires_raw_counts = True
    raw_counts_reason = "scVI's likelihood is a negative binomial over integer counts"
    # No symbol -> ID table ships with the Census models: a symbol-only dataset is turned away
    # (mapping symbols through an outside table would be a choice the model's authors did not make).
    gene_identifiers = "ensembl"
    gene_identifiers_reason = "the Census scVI models are keyed by Ensembl gene ID and ship no symbol->ID table"

    def batch_roles(self) -> Dict[str, Tuple[str, str]]:
        """The batch roles from ``--scvi_batch_columns`` (defaults: the CELLxGENE columns)."""
        return parse_batch_roles(getattr(getattr(self, "args", None), "scvi_batch_columns", "") or "")

    def single_cell_reasons(self, dataset) -> List[str]:
        """The base reasons, with the batch roles in place of the fixed CELLxGENE obs columns."""
        saved = self.required_obs_keys
        self.required_obs_keys = []  # an instance attribute: the class keeps its CELLxGENE columns
        try:
            reasons = super().single_cell_reasons(dataset)
        finally:
            self.required_obs_keys = saved
        try:
            roles = self.batch_roles()
        except ValueError as err:
            return reasons + [str(err)]
        missing = [f"{role} (obs['{value}'])" if value != role else role
                   for role, (kind, value) in roles.items()
                   if kind == "column" and value not in dataset.adata.obs.columns]
        if missing:
            reasons.append(f"Missing required obs keys: {missing} (name the columns or constants that play "
                           "these batch roles with the samplesheet column scvi_batch_columns)")
        return reasons

    def input_notes(self, dataset) -> List[str]:
        """The batch roles used, for the verdict's notes."""
        return [f"batch roles: {describe_batch_roles(self.batch_roles())}"]

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
        import pandas as pd
        import scvi
        import torch

        from czbenchmarks.device import select_device

        device = select_device(self.args.device)
        scvi.settings.seed = self.args.seed
        source = dataset.adata
        roles = self.batch_roles()
        gene_ids = dataset.gene_ids.str.split(".").str[0]
        reference = scvi.model.SCVI.prepare_query_anndata(source, self.model_weights_dir, return_reference_var_names=True)
        columns = np.flatnonzero(np.asarray(gene_ids.isin(reference)))
        # A private obs of the batch roles and a private matrix of the reference's genes, read in row
        # slices from wherever the gate found the counts: the dataset's own names stay as the user wrote them.
        obs = pd.DataFrame(index=source.obs_names)
        for role, (kind, value) in roles.items():
            obs[role] = source.obs[value].astype(str).to_numpy() if kind == "column" else value
        query = ad.AnnData(X=reference_gene_counts(dataset.counts, columns), obs=obs)
        query.var_names = gene_ids[columns]
        query.obs["batch"] = query.obs[list(BATCH_ROLES)].astype(str).agg("".join, axis=1)
        known = self.reference_batches()
        scvi.model.SCVI.prepare_query_anndata(query, self.model_weights_dir, return_reference_var_names=False)
        model = scvi.model.SCVI.load_query_data(query, self.model_weights_dir, accelerator="cpu")
        model.is_trained = True  # zero-shot mapping, as the reference: no query training
        if device == "cuda":
            model.to_device("cuda")
        with torch.inference_mode():
            latent = model.get_latent_representation(batch_size=self.args.batch_size)
        batches = sorted(set(query.obs["batch"].astype(str)))
        unseen = [b for b in batches if known is not None and b not in known]
        self.run_info = {
            "device": device,
            "n_reference_genes": int(query.n_vars),
            "counts_location": dataset.counts_location or dataset.counts_finding.location,
            "batch_roles": describe_batch_roles(roles),
            "n_query_batches": len(batches),
            "n_query_batches_unseen": len(unseen) if known is not None else None,
            "unseen_batches": "appended by scvi-tools' load_query_data with freshly initialised, untrained "
                              "weights; with encode_covariates=False (the Census models) only the decoder reads "
                              "the batch, so the latent does not depend on it; with True the encoder does",
            "encode_covariates": bool(getattr(model.module, "encode_covariates", False)),
        }
        dataset.set_output(self.model_type, DataType.EMBEDDING, np.asarray(latent, dtype=np.float32))

    def reference_batches(self):
        """The batch categories the reference model was trained with (``None``: not recorded), from
        scvi-tools' own reader of the saved registry."""
        import scvi

        try:
            registry = scvi.model.SCVI.load_registry(self.model_weights_dir)
            mapping = registry["field_registries"]["batch"]["state_registry"]["categorical_mapping"]
        except (KeyError, TypeError, ValueError) as err:
            logger.info("scVI registry has no batch categories (%s); unseen batches not counted", err)
            return None
        return {str(b) for b in mapping}


def reference_gene_counts(X, columns):
    """CSR float32 of ``X[:, columns]``, read a row slice at a time (X in memory or backed)."""
    import scipy.sparse as sp

    from czbenchmarks.datasets.inputs import row_blocks

    blocks = [block[:, columns] for _, block in row_blocks(X)]
    if not blocks:
        return sp.csr_matrix((0, len(columns)), dtype="float32")
    return sp.vstack(blocks, format="csr")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    SCVI().run()
