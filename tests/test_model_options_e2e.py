"""--precision and --model_args reach exactly the model scripts they are meant for, and are recorded."""

from __future__ import annotations

from conftest import run_nextflow


def test_precision_and_model_args_reach_only_their_models(tmp_path):
    run = run_nextflow(
        tmp_path, "-profile", "test", "--models", "geneformer,scvi", "--tasks", "clustering", "--baselines", "false",
        "--precision", "bfloat16", "--model_args", "geneformer=--forward_batch_size 4",
        "--weights_cache", str(tmp_path / "weights_cache"),
    )
    assert run.returncode == 0, run.explain()
    scripts = {row["tag"]: (tmp_path / "work").glob(f"{row['hash']}*/.command.sh")
               for row in run.trace() if row["process"].endswith("RUN_MODEL")}
    commands = {tag: next(iter(paths)).read_text() for tag, paths in scripts.items()}
    geneformer = [text for tag, text in commands.items() if ":geneformer:" in tag]
    scvi = [text for tag, text in commands.items() if ":scvi:" in tag]
    assert geneformer and scvi
    # Geneformer offers bfloat16 (conf/models.yaml `precisions`); scVI does not and runs float32.
    assert all("--precision bfloat16 --forward_batch_size 4" in text for text in geneformer)
    assert not any("--precision" in text or "--forward_batch_size" in text for text in scvi)

    results = run.results()
    records = [rec["provenance"] for rec in results["provenance"].values()]
    geneformer_runs = [rec["run_info"] for rec in records if rec.get("model") == "geneformer"]
    assert geneformer_runs and all(r["precision"] == "bfloat16" and r["forward_batch_size"] == 4
                                   for r in geneformer_runs), geneformer_runs
    # The run header keeps what was asked, for the report's metadata.
    assert results["run"]["precision"] == "bfloat16"
    assert results["run"]["model_args"] == "geneformer=--forward_batch_size 4"


def test_model_args_must_name_a_registry_model(tmp_path):
    run = run_nextflow(tmp_path, "-profile", "test", "--model_args", "geneformr=--forward_batch_size 4")
    assert run.returncode != 0
    text = run.proc.stdout + run.proc.stderr
    assert "--model_args: 'geneformr=--forward_batch_size 4' must be <model>=<options>" in text
    assert "Submitted process" not in text
