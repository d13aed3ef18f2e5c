#!/usr/bin/env python3
"""Size of benchmark_results.json and report.html for the full catalogue: 40 datasets x 6 models.

Generates the EVALUATE documents such a run produces (the reference's 40 datasets: 26 Tabula Sapiens
tissues and 9 spermatogenesis species with the embedding tasks, 9-species cross-species per model, 5
Perturb-seq sets with ~100 test conditions each; scVI, Geneformer, scGPT, UCE beside the baselines on
the single-cell sets, scGenePT beside the control baselines on the perturbation sets), with provenance
the size the real outputs carry, and writes the report from them.

Baseline: the same documents in the previous shape, where every result row carried its output's whole
provenance and software (reconstructed here from the same records).

Target: report.html under 10 MB (Seqera Platform previews reports only below that), the results file
small. The page holds the ranking figure, the quality-vs-cost scatter and one plot per task; each UMAP
adds one PNG, whose size is measured on one generated embedding and multiplied by the number of
embedding outputs. ``--seeds N`` gives every embedding-task metric N per-seed values and a t interval
(the shape EVALUATE writes with ``--seeds``); a generated trace gives every output a cost row.
tests/test_report.py runs :func:`measure` and asserts the size.

    python bench/bench_report_size.py
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SC_DATASETS = [f"tsv2_tissue_{i:02d}" for i in range(26)] + [f"{s}_spermatogenesis" for s in (
    "human", "mouse", "rhesus_macaque", "gorilla", "chimpanzee", "marmoset", "chicken", "opossum", "platypus")]
PERTURB_DATASETS = ["adamson_perturb", "norman_perturb", "dixit_perturb", "replogle_k562_perturb", "replogle_rpe1_perturb"]
EMBEDDERS = ["scvi", "geneformer", "scgpt", "uce"]
SOFTWARE = {name: "1.2.3" for name in (
    "python", "numpy", "scipy", "pandas", "anndata", "scanpy", "scikit-learn", "torch", "transformers", "scvi-tools",
    "h5py", "omegaconf", "czbenchmarks", "igraph", "leidenalg", "pynndescent", "safetensors", "accelerate")}


def provenance(model: str, variant: str, dataset: str, rng: np.random.Generator) -> dict[str, Any]:
    files = {f"shard_{i}.bin": "%064x" % rng.integers(0, 2**62) for i in range(3)}
    return {"model": model, "model_type": model.upper(), "variant": variant, "dataset": dataset, "seed": 42,
            "weights": {"source": f"s3://cz-benchmarks-data/models/v1/{model}/{variant}/", "files": files},
            "software": SOFTWARE, "run_info": {"n_cells": 50000, "n_genes": 30000, "batch_size": 64,
                                               "device": "cuda", "precision": "float32", "dropped_cells": []}}


def doc(dataset: str, model: str, variant: str, task: str, metrics: list[dict[str, Any]],
        prov: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": dataset, "datasets": dataset.split("+"), "model": model, "variant": variant, "task": task,
            "seed": 42, "status": "ok", "params": {"label_key": "cell_type"}, "n_cells_scored": 50000,
            "model_type": prov.get("model_type", "BASELINE"), "provenance": prov,
            "evaluation_software": SOFTWARE, "metrics": metrics}


def with_seeds(metrics: list[dict[str, Any]], rng: np.random.Generator, seeds: int) -> list[dict[str, Any]]:
    """Per-seed values around each value and their t interval, as EVALUATE writes them with --seeds."""
    if seeds < 2:
        return metrics
    from czbenchmarks.report_scores import t_interval

    out = []
    for m in metrics:
        values = [float(np.clip(m["value"] + rng.normal(0, 0.02), 0, 1)) for _ in range(seeds)]
        out.append({**m, "value": float(np.mean(values)), "values": values, "interval": t_interval(values)})
    return out


def metrics_of(task: str, rng: np.random.Generator, n_conditions: int) -> list[dict[str, Any]]:
    value = lambda: float(rng.random())  # noqa: E731
    if task == "clustering":
        return [{"metric_type": m, "value": value(), "params": {}} for m in ("adjusted_rand_index", "normalized_mutual_info")]
    if task == "embedding":
        return [{"metric_type": "silhouette_score", "value": value(), "params": {}}]
    if task == "label_prediction":
        return [{"metric_type": f"mean_fold_{m}", "value": value(), "params": {"classifier": c}}
                for m in ("accuracy", "f1", "precision", "recall", "auroc") for c in ("MEAN(knn,lr,rf)", "lr", "knn", "rf")]
    if task in ("integration", "cross_species"):
        return [{"metric_type": m, "value": value(), "params": {}} for m in ("entropy_per_cell", "batch_silhouette")]
    conditions = [f"GENE{i}+ctrl" for i in range(n_conditions)] + ["MEAN"]
    return [{"metric_type": m, "value": value(), "params": {"condition": c, "subset": s}}
            for c in conditions for m, s in (("mean_squared_error", "all"), ("mean_squared_error", "top20"),
                                              ("pearson_correlation", "all"), ("pearson_correlation", "top20"),
                                              ("pearson_correlation", "top100"), ("jaccard", "top20"),
                                              ("jaccard", "top100"), ("mean_squared_error", "top100"))]


def catalogue_run(n_conditions: int, seeds: int = 1) -> tuple[list[dict[str, Any]], list[str], str]:
    """Every EVALUATE document of the full-catalogue run, its plan lines and its trace (one row per output)."""
    rng = np.random.default_rng(0)
    docs, cells, trace = [], [], []
    for dataset in SC_DATASETS:
        for model in EMBEDDERS + ["baseline"]:
            variants = {"pca": ["clustering", "embedding", "integration"], "raw_expression": ["label_prediction"]} \
                if model == "baseline" else {"v1": ["clustering", "embedding", "label_prediction", "integration"]}
            for variant, tasks in variants.items():
                prov = provenance(model, variant, dataset, rng) if model != "baseline" else \
                    {"model": "baseline", "model_type": "BASELINE", "variant": variant, "software": SOFTWARE}
                trace.append((f"{dataset}:{model}:{variant}", "RUN_BASELINE" if model == "baseline" else "RUN_MODEL"))
                for task in tasks:
                    docs.append(doc(dataset, model, variant, task,
                                    with_seeds(metrics_of(task, rng, n_conditions), rng, seeds), prov))
                    cells.append({"dataset": dataset, "datasets": [dataset], "model": model, "variant": variant,
                                  "task": task, "status": "scheduled", "reason": "", "stage": "validate"})
    sperm = [d for d in SC_DATASETS if d.endswith("spermatogenesis")]
    for model in EMBEDDERS:
        parts = {d: provenance(model, "v1", d, rng) for d in sperm}
        key = "+".join(sorted(sperm))
        docs.append(doc(key, model, "v1", "cross_species", with_seeds(metrics_of("cross_species", rng, 0), rng, seeds),
                        {"model": model, "model_type": model.upper(), "variant": "v1", "parts": parts}))
        cells.append({"dataset": key, "datasets": sorted(sperm), "model": model, "variant": "v1",
                      "task": "cross_species", "status": "scheduled", "reason": "", "stage": "group"})
    for dataset in PERTURB_DATASETS:
        for model, variant in (("scgenept", "go_c_gpt_concat"), ("baseline", "control_mean"), ("baseline", "control_median")):
            prov = provenance(model, variant, dataset, rng)
            trace.append((f"{dataset}:{model}:{variant}", "RUN_BASELINE" if model == "baseline" else "RUN_MODEL"))
            docs.append(doc(dataset, model, variant, "perturbation", metrics_of("perturbation", rng, n_conditions), prov))
            cells.append({"dataset": dataset, "datasets": [dataset], "model": model, "variant": variant,
                          "task": "perturbation", "status": "scheduled", "reason": "", "stage": "validate"})
    lines = [json.dumps({"kind": "run", "models": ",".join(EMBEDDERS + ["scgenept"])})]
    lines += [json.dumps({"kind": "dataset", "id": d, "organism": "homo_sapiens", "label_key": "cell_type",
                          "tasks": []}) for d in SC_DATASETS + PERTURB_DATASETS]
    lines += [json.dumps({"kind": "cell", **c}) for c in cells]
    trace_text = "task_id\tprocess\ttag\tstatus\texit\tattempt\trealtime\t%cpu\tpeak_rss\tworkdir\tcontainer\n" + "".join(
        f"{i}\tCZBENCHMARKS:INFERENCE:{process}\t{tag}\tCOMPLETED\t0\t1\t{int(rng.integers(1, 90))}m {int(rng.integers(0, 60))}s"
        f"\t{rng.uniform(80, 800):.1f}%\t{rng.uniform(1, 60):.1f} GB\t/work/{i:02d}/{'ab' * 15}\t"
        f"ghcr.io/czbenchmarks-nf/{tag.split(':')[1]}:0.1.0\n" for i, (tag, process) in enumerate(trace))
    return docs, lines, trace_text


def one_umap_png_bytes(n_cells: int) -> int:
    """The size of one UMAP figure as the report embeds it (base64 PNG)."""
    import anndata as ad
    import pandas as pd

    from czbenchmarks.report_html import umap_plot

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 12, n_cells)
    emb = rng.normal(size=(n_cells, 32)).astype(np.float32) + labels[:, None]
    adata = ad.AnnData(obs=pd.DataFrame({"cell_type": pd.Categorical(labels.astype(str))},
                                        index=[f"c{i}" for i in range(n_cells)]))
    adata.obsm["X_emb"] = emb
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.scvi.h5ad"
        adata.write_h5ad(path)
        return len(umap_plot(path, "cell_type", "d - scvi", n_cells, 42))


def measure(out: Path, n_conditions: int = 100, umap_cells: int = 2000, seeds: int = 1) -> dict[str, Any]:
    """Write the full-catalogue report into ``out``; its sizes (and those of the previous results shape)."""
    from czbenchmarks.report import write_report

    docs, lines, trace_text = catalogue_run(n_conditions, seeds)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, d in enumerate(docs):
            files.append(Path(tmp) / f"{i}.json")
            files[-1].write_text(json.dumps(d))
        plan = Path(tmp) / "plan.jsonl"
        plan.write_text("\n".join(lines))
        trace = Path(tmp) / "trace.txt"
        trace.write_text(trace_text)
        start = time.perf_counter()
        results = write_report(files, [], out, plan_file=plan, trace_file=trace)
        seconds = time.perf_counter() - start
    new_json = (out / "benchmark_results.json").stat().st_size
    html = (out / "report.html").stat().st_size
    # The previous shape: each row with its output's provenance and software copied in.
    records = results["provenance"]
    old_rows = [{**{k: v for k, v in r.items() if k != "provenance_id"},
                 "software": records[r["provenance_id"]]["software"],
                 "provenance": records[r["provenance_id"]]["provenance"]} for r in results["results"]]
    old = {k: v for k, v in results.items() if k != "provenance"}
    old["results"] = old_rows
    old_json = len(json.dumps(old, indent=2, default=str).encode())
    umap = one_umap_png_bytes(umap_cells)
    n_embedding_outputs = len(SC_DATASETS) * (len(EMBEDDERS) + 1)
    return {
        "n_results": results["n_results"], "n_provenance_records": len(records), "seeds": seeds,
        "n_ranked_models": len(results["ranking"]["models"]), "n_cost_rows": len(results["cost"]["outputs"]),
        "benchmark_results_json_bytes": new_json, "previous_shape_json_bytes": old_json,
        "json_ratio_previous_over_new": round(old_json / new_json, 2),
        "report_html_bytes_without_umaps": html, "one_umap_bytes": umap, "n_embedding_outputs": n_embedding_outputs,
        "report_html_bytes_with_all_umaps": html + umap * n_embedding_outputs, "write_seconds": round(seconds, 1),
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conditions", type=int, default=100, help="test conditions per perturbation dataset")
    parser.add_argument("--umap_cells", type=int, default=2000, help="cells of the generated UMAP (the size barely depends on it)")
    parser.add_argument("--seeds", type=int, default=3, help="per-seed values for every embedding-task metric (1: none)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "report_size")
    args = parser.parse_args()
    report = measure(args.out, args.conditions, args.umap_cells, args.seeds)
    (args.out / "bench_report_size.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
