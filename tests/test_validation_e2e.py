"""End-to-end: broken datasets next to a valid one. The valid dataset is scored and the report
published; each broken sibling is reported with a reason naming it — a broken file as a missing
result (so the run exits non-zero), an incompatible one as not applicable — and with
--fail_on_incompatible the run stops with a message naming the dataset."""

from __future__ import annotations

import csv
from pathlib import Path

import anndata as ad
import pytest

from conftest import TEST_H5AD, run_nextflow

pytestmark = pytest.mark.e2e

BROKEN = {
    "pbmc_truncated": "unreadable h5ad (truncated or corrupt?)",
    "pbmc_martian": "Unknown organism 'martian'",
    "pbmc_symbols": "Gene names must start with ENSG",
}


def write_samplesheet(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = TEST_H5AD.read_bytes()
    (folder / "truncated.h5ad").write_bytes(data[: len(data) // 2])
    symbols = ad.read_h5ad(TEST_H5AD)
    symbols.var_names = list(symbols.var["feature_name"].astype(str))
    symbols.var_names_make_unique()
    symbols.var = symbols.var.drop(columns=["ensembl_id"])
    symbols.write_h5ad(folder / "symbols.h5ad")
    rows = [
        ("pbmc68k", str(TEST_H5AD), "homo_sapiens"),
        ("pbmc_truncated", "truncated.h5ad", "homo_sapiens"),
        ("pbmc_martian", str(TEST_H5AD), "martian"),
        ("pbmc_symbols", "symbols.h5ad", "homo_sapiens"),
    ]
    sheet = folder / "samplesheet.csv"
    with open(sheet, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "h5ad", "organism", "label_key", "batch_key"])
        for dataset_id, path, organism in rows:
            writer.writerow([dataset_id, path, organism, "cell_type", "donor_id"])
    return sheet


@pytest.fixture(scope="module")
def launch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("broken_siblings")


@pytest.fixture(scope="module")
def sheet(launch) -> Path:
    return write_samplesheet(launch / "inputs")


def common_args(launch: Path, sheet: Path):
    return ["-profile", "test", "--input", str(sheet), "--weights_cache", str(launch / "weights_cache"),
            "--tasks", "clustering"]


@pytest.fixture(scope="module")
def lenient_run(launch, sheet):
    run = run_nextflow(launch, *common_args(launch, sheet))
    # Broken files are failures the user must fix: the run says so, after publishing everything else.
    assert run.returncode != 0, run.explain()
    assert (run.outdir / "report.html").is_file() and "scheduled results are missing" in run.proc.stdout + run.log
    return run


def test_broken_siblings_are_skipped_with_reasons_and_the_valid_dataset_is_scored(lenient_run):
    results = lenient_run.results()
    scored = {(r["dataset"], r["model"]) for r in results["results"]}
    assert ("pbmc68k", "scvi") in scored and ("pbmc68k", "baseline") in scored, scored
    assert not {d for d, _ in scored} & {"pbmc_truncated", "pbmc_martian"}
    skipped = {(s["dataset"], s["model"]): s for s in results["skipped"]}
    for dataset_id, fragment in BROKEN.items():
        entry = skipped.get((dataset_id, "scvi"))
        assert entry is not None, (dataset_id, results["skipped"])
        reasons = " | ".join(entry["reasons"])
        assert f"dataset '{dataset_id}'" in reasons and fragment in reasons, entry
    assert skipped[("pbmc_truncated", "scvi")]["verdict"] == "error"
    assert skipped[("pbmc_martian", "baseline")]["verdict"] == "error"
    assert skipped[("pbmc_symbols", "scvi")]["verdict"] == "incompatible"
    assert not [s for s in results["skipped"] if s["dataset"] == "pbmc68k"]
    # Incompatible or broken pairs never reach an inference process.
    tags = [row["tag"] for row in lenient_run.trace() if row["process"].endswith("RUN_MODEL")]
    assert tags and all(tag.startswith("pbmc68k:") for tag in tags), tags
    csv_text = (lenient_run.outdir / "benchmark_results.csv").read_text()
    assert "pbmc_truncated,scvi" in csv_text
    check = results["completeness"]
    assert {(c["dataset"], c["model"]) for c in check["missing"]} == {
        (d, m) for d in ("pbmc_truncated", "pbmc_martian") for m in ("scvi", "baseline")}
    assert all(c["reason"].startswith("dataset error: ") for c in check["missing"])
    # Symbols only: scVI needs Ensembl IDs; the baseline needs none and scores the dataset.
    assert {(c["dataset"], c["model"]) for c in check["not_applicable"]} == {("pbmc_symbols", "scvi")}
    assert ("pbmc_symbols", "baseline") in scored


def test_fail_on_incompatible_stops_the_run_naming_the_dataset(lenient_run, launch, sheet):
    run = run_nextflow(launch, *common_args(launch, sheet), "--fail_on_incompatible", "-resume")
    assert run.returncode != 0, run.explain()
    output = run.proc.stdout + run.proc.stderr
    named = [d for d in BROKEN if f"Dataset '{d}'" in output]
    assert named, run.explain()
    assert BROKEN[named[0]] in output, run.explain()
