"""The dataset catalog (conf/datasets.yaml) and FETCH_DATASET: --datasets fetches, caches and benchmarks by name."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import yaml

from conftest import BIN, ROOT, TEST_H5AD, run_nextflow
from czbenchmarks.datasets import Organism
from s3_fixtures import aws_test_env, fault_proxy, moto_server, s3env  # noqa: F401  (pytest fixtures)

CATALOG = yaml.safe_load((ROOT / "conf" / "datasets.yaml").read_text())["datasets"]


def test_catalog_holds_the_reference_datasets():
    assert len(CATALOG) == 40
    assert sum(name.startswith("tsv2_") for name in CATALOG) == 26
    assert sum(name.endswith("_spermatogenesis") for name in CATALOG) == 9
    perturbation = {name for name in CATALOG if name.endswith("_perturb")}
    assert perturbation == {"adamson_perturb", "norman_perturb", "dixit_perturb", "replogle_k562_perturb",
                            "replogle_rpe1_perturb"}
    for name, entry in CATALOG.items():
        assert entry["path"].startswith("s3://cz-benchmarks-data/datasets/v1/") and entry["path"].endswith(".h5ad")
        Organism.from_name(entry["organism"])  # raises for an unknown organism
        if name in perturbation:
            assert entry["condition_key"] == "condition" and entry["split_key"] == "split"
        else:
            assert entry["label_key"] == "cell_type" and "condition_key" not in entry
    assert CATALOG["mouse_spermatogenesis"]["organism"] == "mus_musculus"
    assert CATALOG["tsv2_bladder"]["path"].endswith("_Bladder_v2_curated.h5ad")


def test_fetch_dataset_script_writes_the_file_and_its_manifest(tmp_path):
    proc = subprocess.run([sys.executable, str(BIN / "czb_fetch_dataset.py"), "--dataset", "pbmc",
                           "--source", str(TEST_H5AD), "--dest", str(tmp_path / "pbmc")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "pbmc" / "czb_manifest.json").read_text())
    entry = next(e for e in manifest["files"] if e["path"] == TEST_H5AD.name)
    assert entry["sha256"] == hashlib.sha256(TEST_H5AD.read_bytes()).hexdigest()
    assert manifest["dataset"] == "pbmc"


@pytest.mark.e2e
def test_datasets_by_name_are_fetched_from_s3_cached_and_benchmarked(s3env, tmp_path):
    bucket = "czb-test-datasets"
    s3env.client.create_bucket(Bucket=bucket)
    s3env.client.upload_file(str(TEST_H5AD), bucket, "datasets/v1/pbmc68k_curated.h5ad")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"datasets": {"pbmc_catalog": {
        "path": f"s3://{bucket}/datasets/v1/pbmc68k_curated.h5ad", "organism": "homo_sapiens",
        "label_key": "cell_type", "batch_key": "donor_id"}}}))
    args = ["-profile", "test", "--datasets", "pbmc_catalog", "--dataset_catalog", str(catalog),
            "--datasets_cache", str(tmp_path / "datasets_cache"), "--weights_cache", str(tmp_path / "wc"),
            "--models", "scvi", "--tasks", "clustering", "--baselines", "false"]
    env = aws_test_env(s3env.proxy.url)
    run = run_nextflow(tmp_path / "first", *args, env=env)
    assert run.returncode == 0, run.explain()
    rows = run.results()["results"]
    assert {(r["dataset"], r["model"], r["task"]) for r in rows} == {("pbmc_catalog", "scvi", "clustering")}
    check = run.results()["completeness"]
    assert check["complete"] and check["expected"] == 1 and check["not_applicable"] == [], check
    cached = tmp_path / "datasets_cache" / "pbmc_catalog"
    manifest = json.loads((cached / "czb_manifest.json").read_text())
    assert manifest["files"][0]["sha256"] == hashlib.sha256(TEST_H5AD.read_bytes()).hexdigest()
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")], "no partial downloads left behind"

    again = run_nextflow(tmp_path / "second", *args, env=env)
    assert again.returncode == 0, again.explain()
    assert "[skipping] Stored process > INITIALISE:FETCH_DATASET" in again.log
    assert s3env.proxy.count("GET", "/datasets/v1/pbmc68k_curated.h5ad") == 1, "the cache must serve the second run"


def test_unknown_dataset_name_is_one_clear_error(tmp_path):
    run = run_nextflow(tmp_path, "-profile", "test", "--datasets", "tsv2_bladdr")
    assert run.returncode != 0
    text = run.proc.stdout + run.proc.stderr
    assert "--datasets: unknown dataset 'tsv2_bladdr'" in text
    assert "Submitted process" not in text
