"""The validation gate: can this model take this dataset? Metadata and a sample of X only.

Verdicts:
  ``pass``          the pair runs;
  ``incompatible``  the model cannot take the dataset (organism, keys, gene IDs, counts, ...);
                    the pair is skipped and reported;
  ``error``         the dataset itself is broken (not HDF5, truncated, NaN counts, ...).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .datasets.checks import count_problems, sample_rows
from .datasets.single_cell import PerturbationSingleCellDataset, SingleCellDataset
from .datasets.types import DataType, Organism

PASS, INCOMPATIBLE, ERROR = "pass", "incompatible", "error"


@dataclass
class Verdict:
    dataset: str
    model: str
    verdict: str = PASS
    reasons: List[str] = field(default_factory=list)
    variant: str = ""
    weights_key: str = ""
    weights_sources: List[List[str]] = field(default_factory=list)
    checks: Dict[str, Any] = field(default_factory=dict)

    def fail(self, verdict: str, reason: str) -> "Verdict":
        # An error outranks an incompatibility: the file itself needs fixing first.
        if self.verdict != ERROR:
            self.verdict = verdict
        self.reasons.append(reason)
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def load_model_class(script: Path, class_name: str):
    """Import ``class_name`` from a model script by path, without running its ``__main__`` block."""
    spec = importlib.util.spec_from_file_location(f"czb_model_{Path(script).stem}", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import model script {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ImportError(f"model script {script} defines no class {class_name}") from None


def open_backed(path: Path):
    """Open an h5ad in backed mode; one-line ``ValueError`` for files that are not readable h5ad."""
    import anndata as ad
    import h5py

    path = Path(path)
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    if not path.is_file():
        raise ValueError(f"not a file: {path}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"not an HDF5/h5ad file: {path.name}")
    try:
        return ad.read_h5ad(path, backed="r")
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"unreadable h5ad (truncated or corrupt?): {path.name}: {first}") from None


def weight_sources(
    model: str, variant: str, variant_config: Dict[str, Any], mirror: Optional[str]
) -> List[Tuple[str, str]]:
    """(URI, sub-folder) pairs a variant's weights come from; a mirror replaces them all."""
    if mirror:
        return [(f"{mirror.rstrip('/')}/{model}/{variant}", "")]
    sources = []
    if variant_config.get("model_uri"):
        sources.append((str(variant_config["model_uri"]), ""))
    for subdir, uri in (variant_config.get("extra_uris") or {}).items():
        sources.append((str(uri), str(subdir)))
    return sources


def weights_key(variant: str, sources: List[Tuple[str, str]]) -> str:
    """Cache folder name: the variant plus a digest of where its weights come from."""
    digest = hashlib.sha256(json.dumps(sources).encode()).hexdigest()[:10]
    return f"{variant or 'default'}-{digest}"


def validate_pair(
    *,
    dataset_id: str,
    h5ad: Path,
    organism: str,
    label_key: str,
    batch_keys: List[str],
    model: str,
    model_script: Path,
    model_class: str,
    model_config: Path,
    requested_variant: str = "",
    needs_weights: bool = True,
    weights_mirror: Optional[str] = None,
    max_cells: int = 2000,
    condition_key: str = "condition",
    split_key: str = "split",
) -> Verdict:
    """Check one dataset x model pair, reading only metadata and up to ``max_cells`` rows of X."""
    from omegaconf import OmegaConf

    verdict = Verdict(dataset=dataset_id, model=model)
    try:
        organism_enum = Organism.from_name(organism) if organism else None
    except ValueError as err:
        return verdict.fail(ERROR, f"dataset '{dataset_id}': {err}")
    if organism_enum is None:
        return verdict.fail(ERROR, f"dataset '{dataset_id}': organism is not specified")
    try:
        adata = open_backed(h5ad)
    except ValueError as err:
        return verdict.fail(ERROR, f"dataset '{dataset_id}': {err}")

    verdict.checks.update(n_cells=int(adata.n_obs), n_genes=int(adata.n_vars))
    if adata.n_obs == 0:
        verdict.fail(ERROR, f"dataset '{dataset_id}': has zero cells")
    if adata.n_vars == 0:
        verdict.fail(ERROR, f"dataset '{dataset_id}': has zero genes")
    if adata.var_names.has_duplicates:
        dupes = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
        verdict.fail(ERROR, f"dataset '{dataset_id}': duplicated var names, e.g. {dupes}")
    for key in [label_key, *batch_keys]:
        if key and key not in adata.obs.columns:
            verdict.fail(ERROR, f"dataset '{dataset_id}': obs column '{key}' (from the samplesheet) not found")

    values, rows_read = sample_rows(adata.X, max_cells) if adata.n_obs and adata.n_vars else ([], 0)
    problems = count_problems(values) if rows_read else []
    verdict.checks["sampled_cells"] = int(rows_read)
    broken = [p for p in problems if "NaN" in p or "negative" in p]
    for problem in broken:
        verdict.fail(ERROR, f"dataset '{dataset_id}': {problem}")
    if verdict.verdict == ERROR:
        return verdict

    model_cls = load_model_class(model_script, model_class)
    dataset_cls = getattr(model_cls, "dataset_type", SingleCellDataset)
    if issubclass(dataset_cls, PerturbationSingleCellDataset):
        dataset = dataset_cls(str(h5ad), organism_enum, condition_key=condition_key, split_key=split_key)
    else:
        dataset = SingleCellDataset(str(h5ad), organism_enum)
    dataset.set_input(DataType.ANNDATA, adata)
    dataset.set_input(DataType.METADATA, adata.obs)

    argv = ["--model_variant", requested_variant] if requested_variant else []
    implementation = model_cls(argv=argv)
    for reason in implementation.incompatibility_reasons(dataset):
        verdict.fail(INCOMPATIBLE, f"dataset '{dataset_id}' x {model}: {reason}")
    non_integer = [p for p in problems if p not in broken]
    if non_integer and getattr(model_cls, "requires_raw_counts", False):
        verdict.fail(INCOMPATIBLE, f"dataset '{dataset_id}' x {model}: counts are not raw: {non_integer[0]}")
    for reason in implementation.vocabulary_reasons(dataset) if hasattr(implementation, "vocabulary_reasons") else []:
        verdict.fail(INCOMPATIBLE, f"dataset '{dataset_id}' x {model}: {reason}")
    if verdict.verdict != PASS:
        return verdict

    config = OmegaConf.to_container(OmegaConf.load(model_config), resolve=True)
    variants = config.get("models", {})
    variant = implementation.get_model_weights_subdir(dataset) if needs_weights else requested_variant
    variant = variant or requested_variant
    if variant not in variants:
        return verdict.fail(
            ERROR, f"{model}: unknown variant '{variant}'; variants: {', '.join(sorted(variants))}"
        )
    verdict.variant = variant
    if needs_weights:
        sources = weight_sources(model, variant, variants[variant], weights_mirror)
        if not sources:
            return verdict.fail(ERROR, f"{model}: variant '{variant}' names no weight URIs in {model_config}")
        verdict.weights_sources = [list(s) for s in sources]
        verdict.weights_key = weights_key(variant, sources)
    return verdict
