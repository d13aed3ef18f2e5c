"""End-to-end: a model written as czbenchmarks' developer guide shows joins the pipeline with
one registry entry and its bin/ script — nothing else changes.

In a copy of the repository the test adds tests/toy_model/ the way docs/adding_a_model.md
describes (bin/toy_model.py, containers/toy/{config.yaml,requirements.txt,Dockerfile,weights/},
one entry in conf/models.yaml), runs `nextflow run main.nf -profile test --models toy` there and
reads the toy rows from benchmark_results.json.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Dict, Optional, Sequence

import pytest

from conftest import ROOT, NextflowRun, run_nextflow

pytestmark = pytest.mark.e2e

TOY = Path(__file__).resolve().parent / "toy_model"

#: Never copied: environments, Nextflow state and outputs, the (large) Nextflow JARs.
_SKIP_TOP = {".venv", ".git", "work", "results", ".nextflow", ".nxf-home", ".pytest_cache"}


def _ignore(folder: str, names):
    rel = Path(folder).resolve().relative_to(ROOT)
    skipped = {n for n in names if n.startswith(".nextflow.log") or n == "__pycache__" or n.endswith(".egg-info")}
    if rel == Path("."):
        skipped |= {n for n in names if n in _SKIP_TOP}
    if rel == Path("tools"):
        skipped |= {"nextflow-lib"}
    if rel == Path("bench"):
        skipped |= {"out"}
    if rel == Path("containers"):
        # The image build's state: the root fs tarball and, while CI builds, the registry's blobs (GBs).
        skipped |= {".cache"}
    return skipped


def copy_repo(dest: Path) -> Path:
    """A copy of the working tree (code, configs, test assets) without environments or run state."""
    shutil.copytree(ROOT, dest, ignore=_ignore, symlinks=True)
    return dest


def run_nextflow_in(repo: Path, launch_dir: Path, *args: str, env: Optional[Dict[str, str]] = None) -> NextflowRun:
    """`nextflow run <repo>/main.nf` in ``launch_dir``, with the Nextflow JARs of this checkout."""
    return run_nextflow(launch_dir, *args, main=repo / "main.nf",
                        env={"NXF_LIB_DIR": str(ROOT / "tools" / "nextflow-lib"), **(env or {})})


def add_model(repo: Path, folder: Path, script: str, container: str, files: Sequence[Path]) -> None:
    """Add a model exactly as docs/adding_a_model.md says: ``bin/<script>`` (executable),
    ``containers/<container>/`` (``files`` and ``folder``'s weights/), and ``folder``'s registry entry."""
    target = repo / "bin" / script
    shutil.copy2(folder / script, target)
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    dest = repo / "containers" / container
    dest.mkdir(parents=True)
    for path in files:
        shutil.copy2(path, dest / path.name)
    shutil.copytree(folder / "weights", dest / "weights")
    registry = repo / "conf" / "models.yaml"
    registry.write_text(registry.read_text().rstrip("\n") + "\n" + (folder / "registry_entry.yaml").read_text())


def add_toy_model(repo: Path) -> None:
    """The toy model: script, container folder (config, requirements, Dockerfile, weights), registry entry."""
    add_model(repo, TOY, "toy_model.py", "toy", [TOY / n for n in ("config.yaml", "requirements.txt", "Dockerfile")])


def test_toy_model_joins_pipeline_with_one_registry_entry(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    before = {p.relative_to(repo) for p in repo.rglob("*") if p.is_file()}
    add_toy_model(repo)
    after = {p.relative_to(repo) for p in repo.rglob("*") if p.is_file()}
    added = after - before
    # Only the script, the container folder and the registry edit: no workflow/module/config change.
    assert all(str(p).startswith(("bin/toy_model.py", "containers/toy/")) for p in added), added

    launch = tmp_path / "launch"
    run = run_nextflow_in(repo, launch, "-profile", "test", "--models", "toy",
                          "--tasks", "clustering", "--weights_cache", str(launch / "weights_cache"))
    assert run.returncode == 0, run.explain()

    results = run.results()
    toy_rows = [r for r in results["results"] if r["model"] == "toy" and r["dataset"] == "pbmc68k"]
    assert toy_rows, results
    assert all(r["model_type"] == "TOY" and r["variant"] == "toy_v1" for r in toy_rows)
    ari = {r["metric"]: r["value"] for r in toy_rows if r["task"] == "clustering"}
    assert "adjusted_rand_index" in ari and -1.0 <= ari["adjusted_rand_index"] <= 1.0
    # The toy weights went through FETCH_WEIGHTS: the row carries their checksums.
    assert "projection.json=" in toy_rows[0]["weights_sha256"]
    # The mouse dataset's genes are outside the toy's human vocabulary: not applicable, with the reason,
    # decided by CHECK_VOCABULARY on the fetched weights.
    check = results["completeness"]
    key = lambda c: (c["dataset"], c["model"], c["task"])  # noqa: E731
    assert check["complete"], check["missing"]
    assert {key(c) for c in check["produced_cells"]} == {("pbmc68k", "toy", "clustering"),
                                                          ("pbmc68k", "baseline", "clustering"),
                                                          ("pbmc_mouse", "baseline", "clustering")}
    assert {key(c) for c in check["not_applicable"]} == {("pbmc_mouse", "toy", "clustering")}
    assert "dataset 'pbmc_mouse'" in check["not_applicable"][0]["reason"]
    # The published output keeps every input cell, in order.
    import anndata as ad

    out = ad.read_h5ad(run.outdir / "outputs" / "pbmc68k" / "pbmc68k.toy.h5ad")
    source = ad.read_h5ad(ROOT / "assets" / "test" / "pbmc68k_test.h5ad", backed="r")
    assert list(out.obs_names) == list(source.obs_names)
    assert out.obsm["X_emb"].shape == (source.n_obs, 8)


GUIDE = Path(__file__).resolve().parent / "guide_model"


def test_developer_guide_skeleton_runs_unchanged(tmp_path):
    """The skeleton of czbenchmarks' model developer guide (no inputs/outputs properties,
    ``ModelType.MYMODEL`` not in the enum, a strict ``parse_args``) joins by docs/adding_a_model.md."""
    repo = copy_repo(tmp_path / "repo")
    add_model(repo, GUIDE, "guide_model.py", "mymodel",
              [GUIDE / "config.yaml", TOY / "requirements.txt", TOY / "Dockerfile"])

    launch = tmp_path / "launch"
    run = run_nextflow_in(repo, launch, "-profile", "test", "--models", "mymodel",
                          "--tasks", "clustering", "--weights_cache", str(launch / "weights_cache"))
    assert run.returncode == 0, run.explain()
    results = run.results()
    rows = [r for r in results["results"] if r["model"] == "mymodel"]
    assert {r["dataset"] for r in rows} == {"pbmc68k"} and all(r["model_type"] == "MYMODEL" for r in rows), rows
    assert {r["metric"] for r in rows} == {"adjusted_rand_index", "normalized_mutual_info"}
    check = results["completeness"]
    # The mouse dataset is not for a human-only model: not applicable, with the validator's reason.
    assert check["complete"] and not check["missing"], check
    assert [(c["dataset"], c["model"], c["task"]) for c in check["not_applicable"]] == [("pbmc_mouse", "mymodel", "clustering")]
    assert "not supported for MyModel" in check["not_applicable"][0]["reason"]
