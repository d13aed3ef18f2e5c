"""EVALUATE's logic: score one model output (or several, for cross-species) with one task.

Inputs by kind:

* ``embedding``: a model/baseline output h5ad (``obsm['X_emb']``, obs aligned to the dataset);
* ``expression``: the dataset h5ad itself, its raw ``X`` used as the embedding (the reference's
  label-prediction baseline, run as BASELINE variant ``raw_expression``);
* ``prediction``: a perturbation prediction h5ad (see :mod:`.perturbation`).

:func:`evaluate` never raises for bad inputs: a failure becomes a document with ``status: "error"``
and the reason, so the report lists it instead of the run dying or hiding it.

``n_seeds`` > 1 repeats the task's seed-dependent parts with the seeds ``seed, seed + 1, ...`` (the
document's ``seeds``; ``seed`` stays the first): see :mod:`.seeds` for what is repeated and the
``values`` / ``interval`` fields it adds to the metric entries.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..constants import EMBEDDED_OBS_KEY, RANDOM_SEED
from .constants import EMBEDDING_TASKS, TASK_NAMES
from .seeds import seed_list
from .types import TaskNotApplicable

INPUT_KINDS = ("embedding", "expression", "prediction")


def check_alignment(output_obs_names: Sequence[str], dataset_h5ad: Path, dataset_id: str) -> None:
    """Raise a clear error when an output's cells are not the dataset's cells in the dataset's order."""
    import anndata as ad

    dataset = ad.read_h5ad(dataset_h5ad, backed="r")
    try:
        expected = dataset.obs_names.astype(str)
    finally:
        dataset.file.close()
    alignment_error(list(map(str, output_obs_names)), list(expected), dataset_id, ordered=True)


def alignment_error(got: List[str], expected: List[str], dataset_id: str, ordered: bool = True) -> None:
    """Raise ``ValueError`` naming the dataset when ``got`` does not match ``expected`` obs_names."""
    if got == expected:
        return
    got_set, expected_set = set(got), set(expected)
    missing = [c for c in expected if c not in got_set]
    extra = [c for c in got if c not in expected_set]
    if not missing and not extra and len(got) == len(expected):
        if ordered:
            raise ValueError(f"dataset '{dataset_id}': the embedding's cells are the dataset's cells in another order")
        return
    dupes = len(got) - len(got_set)
    raise ValueError(
        f"dataset '{dataset_id}': the embedding's cells do not match the dataset's obs_names: "
        f"{len(got)} cells given, {len(expected)} in the dataset; {len(missing)} missing"
        + (f" (e.g. {', '.join(missing[:3])})" if missing else "")
        + f", {len(extra)} unknown" + (f" (e.g. {', '.join(extra[:3])})" if extra else "")
        + (f", {dupes} duplicated" if dupes else "")
    )


def _expression(h5ad: Path, counts_location: str = "", keep_sparse: bool = False,
                choose_rows: Optional[Callable[[Any], Optional[np.ndarray]]] = None):
    """(obs, counts as float32, provenance) of a dataset used as its own embedding.

    The counts are those VALIDATE found (``counts_location``: X, a layer or raw.X; see
    :func:`czbenchmarks.datasets.inputs.counts_matrix`), read from the file in row slices; only the rows
    ``choose_rows(obs)`` returns are kept (all when it returns ``None``), so a sample of a 10⁶-cell
    dataset never holds the whole matrix. ``keep_sparse``: sparse counts stay CSR (label prediction
    scores them without densifying, see :mod:`.label_prediction`); otherwise they are densified, as the
    reference does.
    """
    import anndata as ad
    import scipy.sparse as sp

    from ..datasets.inputs import counts_matrix, describe_counts_location, parse_counts_location, row_blocks

    location = parse_counts_location(counts_location) or "X"
    adata = ad.read_h5ad(h5ad, backed="r")
    try:
        obs = adata.obs.copy()
        rows = choose_rows(obs) if choose_rows else None
        blocks = []
        for start, block in row_blocks(counts_matrix(adata, location)):
            if rows is not None:  # sorted: this block's rows are one contiguous run of them
                first, last = np.searchsorted(rows, [start, start + block.shape[0]])
                block = block[rows[first:last] - start]
            blocks.append(block)
        n_vars = adata.n_vars
    finally:
        adata.file.close()
    X = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_vars), dtype=np.float32)
    if rows is not None:
        obs = obs.iloc[rows]
    if not keep_sparse:
        X = X.toarray()
    provenance = {"model": "baseline", "model_type": "BASELINE", "variant": "raw_expression",
                  "run_info": {"n_genes": int(n_vars), "counts_location": location,
                               "counts": describe_counts_location(location)}}
    return obs, X, provenance


def _label_sample(label_key: str, max_cells: int, seed: int, record: Dict[str, Any]):
    """``choose_rows`` for label prediction: the stratified sample of the labelled cells when there are
    more than ``max_cells`` of them (None otherwise); what was chosen goes into ``record``."""
    import pandas as pd

    from .label_prediction import stratified_cell_sample

    def choose(obs) -> Optional[np.ndarray]:
        if not label_key or label_key not in obs.columns:
            return None  # run_embedding_task names the missing column
        labelled = np.flatnonzero(~pd.isna(obs[label_key]).to_numpy())
        picked = stratified_cell_sample(obs[label_key].to_numpy()[labelled], max_cells, seed)
        if picked is None:
            return None
        record.update({"method": "sampled", "cells": int(picked.size), "of_cells": int(labelled.size),
                       "max_cells": int(max_cells), "stratified_by": label_key, "sample_seed": int(seed)})
        return labelled[picked]

    return choose


def evaluate(
    task: str,
    outputs: Sequence[Path],
    dataset_ids: Sequence[str],
    model: str,
    label_key: str = "",
    batch_key: str = "",
    condition_key: str = "condition",
    split_key: str = "split",
    organisms: Sequence[str] = (),
    datasets: Sequence[Path] = (),
    variant: str = "",
    input_kind: str = "embedding",
    seed: int = RANDOM_SEED,
    n_seeds: int = 1,
    counts_location: str = "",
    label_prediction_max_cells: int = 0,
) -> Dict[str, Any]:
    """The metrics document of one task run (``status`` ``ok`` or ``error``), its seed-dependent parts run
    with ``n_seeds`` seeds from ``seed`` on.

    ``counts_location``: where the raw-expression input keeps its counts (VALIDATE's finding).
    ``label_prediction_max_cells`` (0: no limit): label prediction scores a seeded sample of this many
    labelled cells, stratified by label, the same cells for every model (see
    :func:`.label_prediction.stratified_cell_sample`); each metric's ``computation`` records it."""
    from ..outputs import read_embedding
    from ..provenance import software_versions

    doc: Dict[str, Any] = {
        "dataset": "+".join(dataset_ids), "datasets": list(dataset_ids), "model": model, "variant": variant,
        "task": task, "seed": seed, "seeds": [seed], "input_kind": input_kind, "metrics": [], "params": {},
    }
    provenance: Dict[str, Any] = {}
    try:
        seeds = seed_list(seed, n_seeds)
        doc["seeds"] = seeds
        if task not in TASK_NAMES:
            raise ValueError(f"unknown task '{task}'; known tasks: {', '.join(TASK_NAMES)}")
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"unknown input kind '{input_kind}'")
        if task == "perturbation":
            from .perturbation import read_prediction, run_perturbation_task

            if input_kind != "prediction":
                raise ValueError("the perturbation task scores perturbation predictions, not embeddings")
            _, _, provenance = read_prediction(outputs[0])
            body = run_perturbation_task(datasets[0], outputs[0], condition_key, split_key, seed=seed)
        elif task == "cross_species":
            from .embedding_tasks import run_cross_species_task

            parts = []
            for path, dataset_id, organism in zip(outputs, dataset_ids, organisms):
                obs, emb, prov = read_embedding(path)
                embedded = obs[EMBEDDED_OBS_KEY].to_numpy() if EMBEDDED_OBS_KEY in obs.columns else None
                parts.append({"obs": obs, "embedding": emb, "embedded": embedded, "organism": organism,
                              "dataset": dataset_id})
                provenance.setdefault("parts", {})[dataset_id] = prov
            if len(parts) != len(outputs) or len(parts) != len(organisms):
                raise ValueError("cross_species needs one dataset id and one organism per output")
            body = run_cross_species_task(parts, label_key, seed=seed, seeds=seeds)
            first = next(iter(provenance["parts"].values()), {})
            provenance = {**{k: first.get(k) for k in ("model", "model_type", "variant")}, **provenance}
        else:
            from .embedding_tasks import run_embedding_task

            assert task in EMBEDDING_TASKS
            if input_kind == "prediction":
                raise ValueError(f"the {task} task scores embeddings, not perturbation predictions")
            sample: Dict[str, Any] = {}
            choose_rows = None
            if task == "label_prediction" and label_prediction_max_cells > 0:
                choose_rows = _label_sample(label_key, label_prediction_max_cells, seed, sample)
            if input_kind == "expression":
                obs, emb, provenance = _expression(outputs[0], counts_location, keep_sparse=task == "label_prediction",
                                                   choose_rows=choose_rows)
                embedded = np.ones(len(obs), dtype=bool)
            else:
                obs, emb, provenance = read_embedding(outputs[0])
                if datasets:
                    check_alignment(obs.index, datasets[0], dataset_ids[0])
                embedded = obs[EMBEDDED_OBS_KEY].to_numpy() if EMBEDDED_OBS_KEY in obs.columns else None
                rows = choose_rows(obs) if choose_rows else None
                if rows is not None:
                    obs, emb = obs.iloc[rows], emb[rows]
                    embedded = embedded[rows] if embedded is not None else None
            body = run_embedding_task(task, obs, emb, label_key, seed=seed, embedded=embedded, batch_key=batch_key,
                                      seeds=seeds)
            if sample:
                body["n_cells"] = sample["of_cells"]
                for metric in body["metrics"]:
                    metric["computation"] = {**metric.get("computation", {}), **sample}
        doc.update(body)
        doc["status"] = "ok"
    except TaskNotApplicable as err:  # listed as not applicable, with the reason
        doc["status"] = "not_applicable"
        doc["error"] = str(err)
    except Exception as err:  # reported, never hidden: the report lists the reason
        traceback.print_exc()
        doc["status"] = "error"
        doc["error"] = f"{type(err).__name__}: {err}"
    doc["dataset"] = "+".join(dataset_ids)
    doc["model_type"] = provenance.get("model_type", "") or ("BASELINE" if model == "baseline" else "")
    doc["variant"] = variant or provenance.get("variant") or ""
    doc["provenance"] = provenance
    doc["evaluation_software"] = software_versions()
    return doc
