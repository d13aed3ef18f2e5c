"""The validation gate: can this model take this dataset? Metadata and a sample of X only.

Verdicts:
  ``pass``          the pair runs;
  ``incompatible``  the model cannot take the dataset (organism, obs/var keys, gene-ID prefix,
                    counts not raw, too few genes in the model's vocabulary, ...); the pair is
                    skipped and reported;
  ``error``         the dataset itself is broken (not a file, not HDF5, truncated, unknown
                    organism, duplicated genes, NaN/negative counts, no cells, malformed
                    perturbation conditions, ...).

The gate never imports the model's heavy libraries (they are imported inside ``run_model``)
and never loads X: the obs columns and var are read, X stays on disk and ``max_cells`` rows
are read through anndata's backed sparse dataset (see :func:`czbenchmarks.datasets.h5ad.read_view`).
Model validators see an AnnData of those sampled cells (every obs column, every gene).
Every reason names the dataset (and the model, for incompatibilities).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .datasets.checks import (  # noqa: F401 - sample_rows kept as part of this module's names
    count_problems,
    find_gene_ids,
    gene_name_error,
    gene_prefix_detail,
    is_broken_value_problem,
    perturbation_condition_problems,
    sample_rows,
    split_problems,
)
from .datasets.h5ad import H5adError, H5adView
from .datasets.h5ad import open_backed as _open_backed
from .datasets.h5ad import read_view as _read_view
from .datasets.inputs import counts_cli_value, describe_counts_location
from .datasets.single_cell import PerturbationSingleCellDataset, SingleCellDataset
from .datasets.types import DataType, Organism
from .weights import WeightsRequest, WeightStoreError, plan_weights

PASS, INCOMPATIBLE, ERROR = "pass", "incompatible", "error"


@dataclass
class Verdict:
    """The JSON document VALIDATE writes for one dataset x model pair."""

    dataset: str
    model: str
    verdict: str = PASS
    reasons: list[str] = field(default_factory=list)
    variant: str = ""
    #: task -> why the dataset cannot support it (label classes, batches, cells); the other tasks apply.
    not_applicable: dict[str, str] = field(default_factory=dict)
    #: The model declares a vocabulary: CHECK_VOCABULARY checks the overlap on the fetched weights.
    vocabulary_check: bool = False
    checks: dict[str, Any] = field(default_factory=dict)
    stage: str = "validate"
    #: What a passing pair's model will read and how (counts location, gene names, accepted
    #: non-count input): facts for the report and provenance, never a reason to skip.
    notes: list[str] = field(default_factory=list)
    #: Where consumers read their inputs, as VALIDATE found them: ``counts_layer`` (``X``,
    #: ``raw.X`` or a layer name), ``gene_names`` (source); RUN_MODEL passes ``counts_layer`` on.
    inputs: dict[str, Any] = field(default_factory=dict)
    #: What FETCH_WEIGHTS fetches for the pair (the weight store's plan); not part of the verdict JSON.
    weights: WeightsRequest | None = field(default=None, compare=False)

    def fail(self, verdict: str, reason: str) -> Verdict:
        """Record a reason; an ``error`` outranks ``incompatible`` (the file needs fixing first)."""
        if self.verdict != ERROR:
            self.verdict = verdict
        self.reasons.append(reason)
        return self

    def to_json(self) -> str:
        """The verdict as indented JSON (without the weights request)."""
        doc = asdict(self)
        doc.pop("weights", None)
        return json.dumps(doc, indent=2, default=str)


def load_model_class(script: Path, class_name: str):
    """Import ``class_name`` from a model script by path, without running its ``__main__`` block."""
    script = Path(script)
    spec = importlib.util.spec_from_file_location(f"czb_model_{script.stem}", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import model script {script}")
    module = importlib.util.module_from_spec(spec)
    # Registered before exec so dataclasses/pickle inside the script can find their module.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ImportError(f"model script {script} defines no class {class_name}") from None


def open_backed(path: Path):
    """Open an h5ad with obs/var in memory and X on disk; one-line ``ValueError`` for unreadable files."""
    return _open_backed(path)


def read_view(path: Path, max_cells: int = 2000, counts_layer: str = "") -> H5adView:
    """Obs columns, var and ``max_cells`` sampled cells of an h5ad (see :func:`czbenchmarks.datasets.h5ad.read_view`)."""
    return _read_view(path, max_cells, counts_layer)


def _dataset_problems(dataset_id: str, view: H5adView, label_key: str, batch_keys: list[str],
                      verdict: Verdict) -> list[str]:
    """Structure and value checks of the file itself; returns the non-fatal counts problems."""
    where = f"dataset '{dataset_id}'"
    verdict.checks.update(n_cells=view.n_obs, n_genes=view.n_vars, sampled_cells=view.sampled_cells)
    if view.n_obs == 0:
        verdict.fail(ERROR, f"{where}: has zero cells")
    if view.n_vars == 0:
        verdict.fail(ERROR, f"{where}: has zero genes")
    if view.n_duplicate_obs_names:
        verdict.fail(ERROR, f"{where}: {view.n_duplicate_obs_names} duplicated obs names (cell ids), e.g. "
                            f"{view.duplicate_obs_names}; make them unique (anndata: adata.obs_names_make_unique())")
    var_names = view.var.index
    if var_names.has_duplicates:
        dupes = var_names[var_names.duplicated()].unique()
        verdict.fail(ERROR, f"{where}: {len(dupes)} duplicated var names, e.g. {list(map(str, dupes[:5]))}")
    for key in [label_key, *batch_keys]:
        if key and key not in view.obs.columns:
            verdict.fail(
                ERROR,
                f"{where}: obs column '{key}' (named in the samplesheet) not found; "
                f"obs columns: {list(map(str, view.obs.columns))[:20]}",
            )
    X = view.sample.X  # the sampled rows of the counts matrix (X, a layer or raw.X)
    if X is None or not view.sampled_cells:
        return []
    finding = view.counts
    verdict.checks["counts_location"] = describe_counts_location(finding.location)
    verdict.checks["counts_looked_at"] = {describe_counts_location(k): v for k, v in finding.looked_at.items()}
    verdict.inputs["counts_layer"] = counts_cli_value(finding.location)
    problems = count_problems(X.data)  # the sample is CSR: its stored values
    matrix = describe_counts_location(finding.location)
    for problem in problems:
        if is_broken_value_problem(problem):
            problem = problem.replace("X contains", f"{matrix} contains") if matrix != "X" else problem
            verdict.fail(ERROR, f"{where}: {problem} (in {view.sampled_cells} sampled cells)")
    return [p for p in problems if not is_broken_value_problem(p)]


def _perturbation_problems(dataset_id: str, model: str, obs, condition_key: str, split_key: str,
                           verdict: Verdict) -> None:
    """Condition/split columns of a perturbation dataset, from obs alone."""
    missing = False
    for key, label in ((condition_key, "Condition"), (split_key, "Split")):
        if key not in obs.columns:
            missing = True
            verdict.fail(INCOMPATIBLE, f"dataset '{dataset_id}' x {model}: {label} key {key} not found in adata.obs")
    if missing:
        return
    for problem in perturbation_condition_problems(obs[condition_key]) + split_problems(obs[split_key]):
        verdict.fail(ERROR, f"dataset '{dataset_id}': {problem}")
    verdict.checks["n_conditions"] = int(obs[condition_key].nunique())


def validate_pair(
    *,
    dataset_id: str,
    h5ad: Path,
    organism: str,
    label_key: str,
    batch_keys: list[str],
    model: str,
    model_script: Path,
    model_class: str,
    model_config: Path,
    requested_variant: str = "",
    needs_weights: bool = True,
    weights_mirror: str | None = None,
    max_cells: int = 2000,
    condition_key: str = "condition",
    split_key: str = "split",
    tasks: Sequence[str] = (),
    task_catalogue: Path | None = None,
    counts_layer: str = "",
    scvi_batch_columns: str = "",
) -> Verdict:
    """Check one dataset x model pair, reading only obs/var and up to ``max_cells`` rows of X.

    ``counts_layer`` (samplesheet) names the raw-count matrix (``X``, ``raw.X`` or a layer; empty:
    detected, see :mod:`czbenchmarks.datasets.inputs`); the verdict's ``inputs['counts_layer']``
    says where they were found. ``scvi_batch_columns`` maps scVI's batch roles to obs columns or
    constants (see ``bin/scvi_model.py``); models that take no such option ignore it.

    Order: organism name and file readability (both reported), file structure and values
    (errors), then the model's validator (incompatibilities), raw counts when the model
    needs them, which of ``tasks`` the dataset can support (``not_applicable``), and the variant
    with its weights request (``verdict.weights``; written beside the verdict, not in it). The vocabulary overlap is not checked here: it needs the weights,
    and :func:`check_vocabulary` runs it on the fetched folder (same answer on a cold or warm cache).
    """
    from omegaconf import OmegaConf

    verdict = Verdict(dataset=dataset_id, model=model)
    where = f"dataset '{dataset_id}'"
    organism_enum: Organism | None = None
    if not str(organism or "").strip():
        verdict.fail(ERROR, f"{where}: organism is not specified (samplesheet column 'organism')")
    else:
        try:
            organism_enum = Organism.from_name(organism)
        except ValueError as err:
            verdict.fail(ERROR, f"{where}: {err}")
    try:
        view = _read_view(h5ad, max_cells, counts_layer)
    except (H5adError, ValueError) as err:
        return verdict.fail(ERROR, f"{where}: {err}")
    return _validate_view(
        verdict, view, organism_enum,
        dataset_id=dataset_id, h5ad=Path(h5ad), label_key=label_key, batch_keys=batch_keys,
        model=model, model_script=Path(model_script), model_class=model_class,
        model_config=Path(model_config), requested_variant=requested_variant,
        needs_weights=needs_weights, weights_mirror=weights_mirror,
        condition_key=condition_key, split_key=split_key, tasks=tasks, task_catalogue=task_catalogue,
        omegaconf=OmegaConf, input_options=_input_options(counts_layer, scvi_batch_columns),
    )


def _input_options(counts_layer: str = "", scvi_batch_columns: str = "") -> list[str]:
    """The dataset-input options every model script accepts (see ``pipeline_parser``), when set."""
    argv = ["--counts_layer", counts_layer] if counts_layer else []
    return argv + (["--scvi_batch_columns", scvi_batch_columns] if scvi_batch_columns else [])


def _gate_dataset(model_cls: type, h5ad: Path, organism: Organism, view: H5adView,
                  condition_key: str, split_key: str):
    """The dataset object a model's validator sees: its ``dataset_type``, holding the sampled cells."""
    dataset_cls = getattr(model_cls, "dataset_type", SingleCellDataset)
    if isinstance(dataset_cls, type) and issubclass(dataset_cls, PerturbationSingleCellDataset):
        dataset = dataset_cls(str(h5ad), organism, condition_key=condition_key, split_key=split_key)
    elif isinstance(dataset_cls, type) and issubclass(dataset_cls, SingleCellDataset):
        dataset = dataset_cls(str(h5ad), organism)
    else:
        dataset = SingleCellDataset(str(h5ad), organism)
    # Validators see the sampled cells: every obs column and gene, X of those cells only.
    dataset.set_input(DataType.ANNDATA, view.sample)
    dataset.set_input(DataType.METADATA, view.sample.obs)
    return dataset


def _validate_view(verdict: Verdict, view: H5adView, organism_enum: Organism | None, *, dataset_id: str, h5ad: Path,
                   label_key: str, batch_keys: list[str], model: str, model_script: Path, model_class: str,
                   model_config: Path, requested_variant: str, needs_weights: bool,
                   weights_mirror: str | None, condition_key: str, split_key: str,
                   tasks: Sequence[str], task_catalogue: Path | None,
                   omegaconf, input_options: Sequence[str] = ()) -> Verdict:
    pair = f"dataset '{dataset_id}' x {model}"
    soft_problems = _dataset_problems(dataset_id, view, label_key, batch_keys, verdict)
    model_cls = load_model_class(model_script, model_class)
    dataset_cls = getattr(model_cls, "dataset_type", SingleCellDataset)
    is_perturbation = isinstance(dataset_cls, type) and issubclass(dataset_cls, PerturbationSingleCellDataset)
    if is_perturbation:
        _perturbation_problems(dataset_id, model, view.obs, condition_key, split_key, verdict)
    if verdict.verdict == ERROR or organism_enum is None:
        return verdict

    dataset = _gate_dataset(model_cls, h5ad, organism_enum, view, condition_key, split_key)
    if view.counts is not None:
        dataset.counts_location = view.counts.location

    argv = ["--model_variant", requested_variant] if requested_variant else []
    # The dataset id lets a model pick its variant by dataset (scGenePT's `<variant>__auto`).
    argv += ["--model_config", str(model_config), "--dataset_id", dataset_id, *input_options]
    implementation = model_cls(argv=argv)
    reasons = implementation.incompatibility_reasons(dataset)
    for reason in reasons:
        verdict.fail(INCOMPATIBLE, f"{pair}: {reason}")
    if view.counts is not None:
        verdict.notes.append(view.counts.summary())
    if soft_problems:
        _counts_policy(verdict, pair, model_cls, view, soft_problems[0])
    source = getattr(implementation, "gene_identifier_source", None)
    genes = source(dataset) if callable(source) and not reasons else ""
    if genes:
        verdict.inputs["gene_names"] = genes
        verdict.notes.append(f"genes: {genes}")
    notes = getattr(implementation, "input_notes", None)
    if callable(notes) and not reasons:
        verdict.notes.extend(notes(dataset))
    if verdict.verdict != PASS:
        return verdict
    if tasks:
        from .tasks.catalogue import applicability, load_catalogue

        columns = {"label_key": label_key, "batch_key": ";".join(batch_keys), "condition_key": condition_key}
        verdict.not_applicable = applicability(load_catalogue(task_catalogue), tasks, view.obs, columns)

    if not needs_weights:  # baselines and imported embeddings: the registry names the variant
        verdict.variant = requested_variant
        return verdict
    config = omegaconf.to_container(omegaconf.load(model_config), resolve=True) or {}
    variants = config.get("models") or {}
    variant = implementation.get_model_weights_subdir(dataset)
    variant = variant or requested_variant or getattr(implementation.args, "model_variant", None) or ""
    if variant not in variants:
        return verdict.fail(
            ERROR, f"{model}: unknown variant '{variant}' (for {where_of(dataset_id)}); "
            f"variants in {model_config.name}: {', '.join(sorted(map(str, variants)))}"
        )
    verdict.variant = variant
    verdict.vocabulary_check = bool(getattr(implementation, "vocabulary_file", None))
    try:
        verdict.weights = plan_weights(model, variant, variants[variant] or {}, weights_mirror,
                                       base_dir=model_config.resolve().parent)
    except WeightStoreError as err:
        return verdict.fail(ERROR, f"{err} in {model_config.name}")
    return verdict


def _counts_policy(verdict: Verdict, pair: str, model_cls: type, view: H5adView, problem: str) -> None:
    """No raw counts found: incompatible for a model that needs them, else a note saying what it reads."""
    verdict.checks["counts"] = problem
    looked = "; ".join(f"{describe_counts_location(k)}: {v}" for k, v in view.counts.looked_at.items())
    why = getattr(model_cls, "raw_counts_reason", "") or ""
    if getattr(model_cls, "requires_raw_counts", False):
        verdict.fail(INCOMPATIBLE, f"{pair}: the model needs raw counts{f' ({why})' if why else ''} but {problem}"
                                   f" and no integer-valued matrix was found ({looked}); name one with the "
                                   "samplesheet column counts_layer")
    else:
        verdict.notes.append(f"input is not raw counts ({problem}); accepted: {why or 'the model takes any expression values'}")


def check_vocabulary(*, dataset_id: str, h5ad: Path, organism: str, model: str, model_script: Path,
                     model_class: str, model_config: Path, variant: str, weights_dir: Path,
                     condition_key: str = "condition", split_key: str = "split", max_cells: int = 2000) -> Verdict:
    """The vocabulary overlap of a dataset with a model's fetched weights (``pass`` or ``incompatible``).

    A pure function of the dataset (its var) and the weights folder: the same on a cold and a warm
    cache. A model that declares no ``vocabulary_file`` passes.
    """
    verdict = Verdict(dataset=dataset_id, model=model, variant=variant, stage="vocabulary")
    view = _read_view(h5ad, max_cells)
    model_cls = load_model_class(model_script, model_class)
    dataset = _gate_dataset(model_cls, Path(h5ad), Organism.from_name(organism), view, condition_key, split_key)
    argv = ["--model_variant", variant] if variant else []
    argv += ["--model_config", str(model_config), "--weights_dir", str(weights_dir), "--dataset_id", dataset_id]
    implementation = model_cls(argv=argv)
    implementation.model_weights_dir = str(weights_dir)
    vocabulary_file = getattr(implementation, "vocabulary_file", None)
    if vocabulary_file:
        found = Path(weights_dir) / str(vocabulary_file)
        if not found.is_file():
            return verdict.fail(ERROR, f"dataset '{dataset_id}' x {model}: the weights folder of variant "
                                       f"'{variant}' has no vocabulary file {vocabulary_file}")
        implementation.vocabulary_path = found
        verdict.checks["vocabulary"] = str(vocabulary_file)
    check = getattr(implementation, "vocabulary_reasons", None)
    for reason in check(dataset) if callable(check) else []:
        verdict.fail(INCOMPATIBLE, f"dataset '{dataset_id}' x {model}: {reason}")
    facts = getattr(implementation, "vocabulary_facts", None)
    if facts:  # e.g. Geneformer: how many genes resolved, how many symbols were mapped to Ensembl IDs
        verdict.checks["genes"] = facts
        verdict.inputs["gene_names"] = facts.get("gene_id_source", "")
        mapped = facts.get("n_mapped_via_dictionary", 0)
        verdict.notes.append(
            f"{facts.get('n_genes_in_vocabulary', 0)} of {facts.get('n_dataset_genes', 0)} genes "
            f"({facts.get('gene_id_source', '')}) are in the vocabulary"
            + (f", {mapped} of them mapped to Ensembl IDs through the weights' gene mapping dictionary" if mapped else ""))
    return verdict


def where_of(dataset_id: str) -> str:
    """``dataset '<id>'``: how messages name a dataset."""
    return f"dataset '{dataset_id}'"
