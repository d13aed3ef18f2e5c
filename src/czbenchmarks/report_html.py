"""report.html: a self-contained page (no network; plots inlined as base64 PNG, drawn with matplotlib).

Sections: completeness banner, summary table (headline metric rows: models beside baselines),
per-task metric plots, one UMAP per dataset x model coloured by the dataset's label column, the
dataset x model pairs and results that are missing and why, and run metadata.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}tr.baseline td{color:#555}
.ok{background:#e7f6e7;border:1px solid #7c7;padding:8px}.bad{background:#fdeaea;border:1px solid #d77;padding:8px}
img.plot{max-width:100%;border:1px solid #eee;margin:6px 0}.grid{display:flex;flex-wrap:wrap;gap:8px}
.grid figure{margin:0}.grid figcaption{font-size:12px;color:#555}code{font-size:12px}
td{vertical-align:top}td.num{white-space:nowrap}
td.long{min-width:24em;max-width:48em;overflow-wrap:anywhere;font-size:12px}
"""


#: Text longer than this gets a bounded, wrapping table cell.
LONG_CELL = 80


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _png(fig) -> str:
    """A matplotlib figure as an inline <img> (base64 PNG); the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="plot" alt="plot" src="data:image/png;base64,{data}">'


def model_label(row: Dict[str, Any]) -> str:
    """``model`` or ``baseline:variant`` (baselines always show their variant)."""
    if row["model"] == "baseline":
        return f"BASELINE:{row['variant']}"
    return row["model"]


def params_label(params: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def headline(row: Dict[str, Any]) -> bool:
    """Rows shown in the summary: label prediction averaged over classifiers, perturbation over conditions."""
    params = row.get("metric_params") or {}
    if row["task"] == "label_prediction":
        return str(params.get("classifier", "")).startswith("MEAN")
    if row["task"] == "perturbation":
        return params.get("condition") == "MEAN"
    return True


def summary_table(rows: List[Dict[str, Any]]) -> Tuple[List[str], "OrderedDict[Tuple[str, str, str], Dict[str, Any]]"]:
    """(model columns, {(dataset, task, metric label): {model label: value}})."""
    models: List[str] = []
    table: "OrderedDict[Tuple[str, str, str], Dict[str, Any]]" = OrderedDict()
    for row in rows:
        if not headline(row):
            continue
        label = model_label(row)
        if label not in models:
            models.append(label)
        params = {k: v for k, v in (row.get("metric_params") or {}).items() if k not in ("classifier", "condition")}
        metric = row["metric"] + (f" ({params_label(params)})" if params else "")
        table.setdefault((row["dataset"], row["task"], metric), {})[label] = row["value"]
    models.sort(key=lambda m: (m.startswith("BASELINE"), m))
    return models, table


def task_plots(rows: List[Dict[str, Any]]) -> Dict[str, str]:
    """One figure per task: a panel per headline metric, grouped bars per dataset, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: Dict[str, str] = {}
    by_task: Dict[str, List[Dict[str, Any]]] = OrderedDict()
    for row in rows:
        if headline(row) and row["value"] is not None:
            by_task.setdefault(row["task"], []).append(row)
    for task, task_rows in by_task.items():
        metrics = list(OrderedDict.fromkeys(
            row["metric"] + (f" ({row['metric_params'].get('subset')})" if "subset" in row["metric_params"] else "")
            for row in task_rows))
        models = sorted({model_label(r) for r in task_rows}, key=lambda m: (m.startswith("BASELINE"), m))
        datasets = sorted({r["dataset"] for r in task_rows})
        ncols = min(4, len(metrics))
        nrows = int(np.ceil(len(metrics) / ncols))
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
        cmap = plt.get_cmap("tab10")
        width = 0.8 / max(len(models), 1)
        for ax, metric in zip(axes.ravel(), metrics):
            for m_i, model in enumerate(models):
                values = []
                for dataset in datasets:
                    match = [r["value"] for r in task_rows if r["dataset"] == dataset and model_label(r) == model and
                             r["metric"] + (f" ({r['metric_params'].get('subset')})" if "subset" in r["metric_params"] else "") == metric]
                    values.append(match[0] if match else np.nan)
                x = np.arange(len(datasets)) + (m_i - (len(models) - 1) / 2) * width
                baseline = model.startswith("BASELINE")
                ax.bar(x, values, width, label=model, color=cmap(m_i % 10), hatch="//" if baseline else None,
                       edgecolor="#333" if baseline else None, alpha=0.75 if baseline else 1.0)
            ax.set_title(metric, fontsize=10)
            ax.set_xticks(np.arange(len(datasets)))
            ax.set_xticklabels(datasets, rotation=20, ha="right", fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
        for ax in axes.ravel()[len(metrics):]:
            ax.axis("off")
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=min(len(models), 5), fontsize=8,
                   bbox_to_anchor=(0.5, 1.02 + 0.02 * nrows))
        fig.suptitle(task, y=1.08 + 0.02 * nrows, fontsize=12)
        fig.tight_layout()
        plots[task] = _png(fig)
    return plots


def umap_plot(h5ad: Path, label_key: str, title: str, max_cells: int = 5000, seed: int = 42) -> str:
    """UMAP of one output embedding (exact kNN graph, seeded), coloured by ``label_key``."""
    import anndata as ad
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    from .constants import EMBEDDED_OBS_KEY, EMBEDDING_OBSM_KEY
    from .tasks.metrics import ExactKNNTransformer

    adata = ad.read_h5ad(h5ad)
    emb = np.asarray(adata.obsm[EMBEDDING_OBSM_KEY], dtype=np.float32)
    keep = ~np.isnan(emb).any(axis=1)
    if EMBEDDED_OBS_KEY in adata.obs.columns:
        keep &= adata.obs[EMBEDDED_OBS_KEY].to_numpy().astype(bool)
    idx = np.flatnonzero(keep)
    if len(idx) > max_cells:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_cells, replace=False))
    work = ad.AnnData(obs=adata.obs.iloc[idx].copy())
    work.obsm["emb"] = emb[idx]
    sc.pp.neighbors(work, use_rep="emb", random_state=seed, transformer=ExactKNNTransformer(min(15, len(idx))))
    sc.tl.umap(work, random_state=seed)
    coords = work.obsm["X_umap"]
    labels = work.obs[label_key].astype(str).to_numpy() if label_key in work.obs.columns else np.array(["?"] * len(idx))
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    cmap = plt.get_cmap("tab20")
    for i, label in enumerate(sorted(set(labels))):
        mask = labels == label
        ax.scatter(coords[mask, 0], coords[mask, 1], s=4, color=cmap(i % 20), label=label, linewidths=0)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, markerscale=2.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
              title=label_key, title_fontsize=7)
    return _png(fig)


def _embedding_title(h5ad: Path) -> Tuple[str, str, str]:
    """(dataset, model label, sort key) from an output's provenance (file name as fallback)."""
    import anndata as ad

    from .constants import PROVENANCE_UNS_KEY

    adata = ad.read_h5ad(h5ad, backed="r")
    try:
        prov = json.loads(adata.uns.get(PROVENANCE_UNS_KEY, {}).get("json", "{}"))
    finally:
        adata.file.close()
    parts = Path(h5ad).name.split(".")
    dataset = prov.get("dataset") or parts[0]
    model = prov.get("model") or (parts[1] if len(parts) > 2 else "?")
    label = model_label({"model": model, "variant": prov.get("variant") or ""}) if model == "baseline" else model
    if model != "baseline" and prov.get("variant"):
        label = f"{model}:{prov['variant']}"
    return dataset, label, f"{dataset}|{model == 'baseline'}|{label}"


def _table(headers: Sequence[str], body: List[Sequence[Any]], classes: Optional[List[str]] = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in headers) + "</tr>"]
    for i, cells in enumerate(body):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        tds = []
        for cell in cells:
            if isinstance(cell, float):
                tds.append(f'<td class="num">{cell:.4f}</td>')
            elif isinstance(cell, str) and len(cell) > LONG_CELL:
                # Long unbroken text (software versions, checksums) wraps inside a bounded column.
                tds.append(f'<td class="long">{_esc(cell)}</td>')
            else:
                tds.append(f"<td>{_esc(cell)}</td>")
        out.append(f"<tr{cls}>" + "".join(tds) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_report(
    results: Dict[str, Any], embedding_files: Sequence[Path] = (), plots: bool = True,
    umap_max_cells: int = 5000, seed: int = 42,
) -> str:
    """The whole HTML page for a ``benchmark_results.json`` document."""
    rows = results["results"]
    parts: List[str] = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>czbenchmarks-nf report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>czbenchmarks-nf benchmark report</h1>",
        f"<p>Generated {_esc(results.get('generated'))} by czbenchmarks-nf {_esc(results.get('czbenchmarks_nf_version'))}"
        f" (results schema {_esc(results.get('schema_version'))}); {len(rows)} metric values.</p>",
    ]
    check = results.get("completeness")
    if check:
        if check["complete"]:
            parts.append(f"<p class='ok' id='completeness'>Complete: all {check['expected']} expected "
                         "dataset x model x task results were produced"
                         f" ({len(check.get('not_applicable', []))} not applicable).</p>")
        else:
            parts.append(f"<p class='bad' id='completeness'><b>Incomplete</b>: {check['produced']} of {check['expected']} "
                         f"expected dataset x model x task results; {len(check['missing'])} missing (listed below).</p>")
        for flag in check.get("flags", []):
            parts.append(f"<p class='bad'>{_esc(flag)}</p>")
    # Failures first: what should have been produced and was not, with why.
    missing = (check or {}).get("missing", [])
    if missing:
        parts.append("<h2 id='missing'>Missing results</h2><p>Scheduled, not produced: the task failed "
                     "(exit status and the tail of its log) or the dataset is broken. "
                     "<code>-resume</code> reruns only these.</p>")
        parts.append(_table(["dataset", "model", "variant", "task", "reason"],
                            [[c["dataset"], c["model"], c.get("variant", ""), c["task"], c["reason"]] for c in missing]))
    if results.get("failed") and not check:  # with a plan, the missing table already lists them
        parts.append("<h3>Evaluations that failed</h3>")
        parts.append(_table(["dataset", "model", "variant", "task", "error"],
                            [[f["dataset"], f["model"], f["variant"], f["task"], f["error"]] for f in results["failed"]]))

    parts.append("<h2 id='summary'>Summary</h2><p>Label prediction: mean over classifiers and folds; "
                 "perturbation: mean over test conditions. Every value is in benchmark_results.csv.</p>")
    models, table = summary_table(rows)
    body = [[d, t, m] + [values.get(model) if values.get(model) is not None else "" for model in models]
            for (d, t, m), values in table.items()]
    parts.append(_table(["dataset", "task", "metric"] + models, body))

    if plots and rows:
        parts.append("<h2 id='plots'>Metrics per task</h2><p>Models side by side; baselines hatched.</p>")
        for task, img in task_plots(rows).items():
            parts.append(f"<h3>{_esc(task)}</h3>{img}")

    if plots and embedding_files:
        label_keys = {d["id"]: d.get("label_key", "") for d in results.get("datasets", [])}
        parts.append("<h2 id='umaps'>Embeddings (UMAP)</h2><div class='grid'>")
        entries = []
        for path in embedding_files:
            try:
                dataset, label, key = _embedding_title(Path(path))
                entries.append((key, Path(path), dataset, label))
            except Exception as err:  # an unreadable file is reported, not fatal
                parts.append(f"<p class='bad'>{_esc(Path(path).name)}: {_esc(err)}</p>")
        for _, path, dataset, label in sorted(entries, key=lambda e: e[0]):
            label_key = label_keys.get(dataset, "cell_type")
            try:
                img = umap_plot(path, label_key, f"{dataset} - {label}", umap_max_cells, seed)
                parts.append(f"<figure>{img}<figcaption>{_esc(dataset)} x {_esc(label)}, "
                             f"coloured by {_esc(label_key)}</figcaption></figure>")
            except Exception as err:
                parts.append(f"<p class='bad'>UMAP of {_esc(dataset)} x {_esc(label)} failed: {_esc(err)}</p>")
        parts.append("</div>")

    not_applicable = (check or {}).get("not_applicable", [])
    if not_applicable:
        parts.append("<h2 id='not-applicable'>Not applicable</h2><p>Cells that cannot apply: the model cannot take "
                     "the dataset, or the dataset cannot support the task. They do not count against completeness.</p>")
        parts.append(_table(["dataset", "model", "variant", "task", "reason"],
                            [[c["dataset"], c["model"], c.get("variant", ""), c["task"], c["reason"]] for c in not_applicable]))
    if results.get("skipped"):
        parts.append("<h3>Dataset x model pairs stopped by the gate</h3>")
        parts.append(_table(["dataset", "model", "verdict", "reasons"],
                            [[s["dataset"], s["model"], s["verdict"], " | ".join(s["reasons"])] for s in results["skipped"]]))

    parts.append("<h2 id='metadata'>Run metadata</h2>")
    run = results.get("run") or {}
    parts.append(_table(["field", "value"], [[k, json.dumps(v) if isinstance(v, (list, dict)) else v] for k, v in run.items()]))
    if results.get("datasets"):
        parts.append("<h3>Datasets</h3>")
        parts.append(_table(["id", "organism", "label_key", "batch_key", "tasks"],
                            [[d["id"], d.get("organism"), d.get("label_key"), d.get("batch_key"), ", ".join(d.get("tasks", []))]
                             for d in results["datasets"]]))
    provenance: Dict[str, Dict[str, Any]] = OrderedDict()
    records = results.get("provenance") or {}
    for row in rows:
        key = f"{row['dataset']} x {model_label(row)}"
        if key not in provenance:
            record = records.get(row.get("provenance_id", "")) or {}
            provenance[key] = {"variant": row.get("variant"), "weights_sha256": row.get("weights_sha256") or "",
                               "seed": row.get("seed"), "software": json.dumps(record.get("software") or {}, sort_keys=True)}
    if provenance:
        parts.append("<h3>Provenance per output</h3>")
        parts.append(_table(["output", "variant", "seed", "weights sha256", "software"],
                            [[k, v["variant"], v["seed"], v["weights_sha256"], v["software"]] for k, v in provenance.items()]))
    parts.append(f"<h3>Report software</h3><p><code>{_esc(json.dumps(results.get('report_software', {}), sort_keys=True))}</code></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
