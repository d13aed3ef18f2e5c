"""report.html: a self-contained page (no network; plots inlined as base64 PNG, drawn with matplotlib).

Sections, in reading order: completeness banner and the missing results (why), the ranking (a
funky-heatmap-style figure of scaled scores and the ranking table with intervals and cost), cost
beside quality (table and scatter), per-task detail (raw values with intervals and scaled scores,
notes beside values), per-task metric plots, UMAPs, model cards, the metric glossary, cells that are
not applicable, run metadata and provenance.

The ranking figure is drawn with matplotlib rather than funkyheatmappy (PyPI 0.7.0, Dec 2024):
that package renders offline, but it warns of pandas APIs it relies on that pandas is removing, has
had two releases, cannot mark seed intervals or inseparable neighbours, and would be one more
dependency of the REPORT container for a figure of circles and bars.
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

from .report_scores import headline, metric_label, model_label

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}tr.baseline td{color:#555}
.ok{background:#e7f6e7;border:1px solid #7c7;padding:8px}.bad{background:#fdeaea;border:1px solid #d77;padding:8px}
img.plot{max-width:100%;border:1px solid #eee;margin:6px 0}.grid{display:flex;flex-wrap:wrap;gap:8px}
.grid figure{margin:0}.grid figcaption{font-size:12px;color:#555}code{font-size:12px}
td{vertical-align:top}td.num{white-space:nowrap}
td.long{min-width:16em;max-width:36em;overflow-wrap:anywhere;font-size:12px}
td{max-width:40em;overflow-wrap:break-word}td details summary{cursor:pointer;white-space:nowrap;overflow:hidden;
text-overflow:ellipsis;max-width:32em}td details .full{max-height:12em;overflow:auto;overflow-wrap:anywhere;
white-space:normal}
.ci{color:#666;font-size:11px}.scaled{color:#1a5;font-size:11px;margin-left:4px}.neg{color:#b33}
.note{color:#a60;font-size:11px}ol.notes{font-size:12px;color:#555}.nsep{color:#b60}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ccc;border-radius:6px;padding:8px 12px;
width:400px;font-size:13px}.card h3{margin:2px 0 6px}.card dt{font-weight:600;color:#444}.card dd{margin:0 0 4px 0;
overflow-wrap:anywhere}
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


def params_label(params: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


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


def _long(text: str) -> str:
    """Long text folded into details/summary: the row stays one line high until the reader opens it."""
    return (f'<details><summary>{_esc(text[:60])}…</summary><div class="full">{_esc(text)}</div></details>')


def _table(headers: Sequence[str], body: List[Sequence[Any]], classes: Optional[List[str]] = None,
           table_id: str = "") -> str:
    """A table; floats as 4 decimals, long text folded, ``Markup`` cells as given (already escaped)."""
    ident = f" id='{table_id}'" if table_id else ""
    out = [f"<table{ident}><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in headers) + "</tr>"]
    for i, cells in enumerate(body):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        tds = []
        for cell in cells:
            if isinstance(cell, Markup):
                tds.append(f'<td class="{cell.css}">{cell}</td>' if cell.css else f"<td>{cell}</td>")
            elif isinstance(cell, float):
                tds.append(f'<td class="num">{cell:.4f}</td>')
            elif isinstance(cell, str) and len(cell) > LONG_CELL:
                # Long unbroken text (software versions, checksums) folds; the row stays one line high.
                tds.append(f'<td class="long">{_long(cell)}</td>')
            else:
                tds.append(f"<td>{_esc(cell)}</td>")
        out.append(f"<tr{cls}>" + "".join(tds) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


class Markup(str):
    """HTML already escaped, for :func:`_table` (``css``: the cell's class)."""

    css = ""

    def __new__(cls, text: str, css: str = "") -> "Markup":
        obj = super().__new__(cls, text)
        obj.css = css
        return obj


def _interval_text(interval: Optional[Dict[str, Any]], digits: int = 4) -> str:
    if not interval or interval.get("low") is None or interval.get("high") is None:
        return ""
    level = interval.get("level")
    level_text = f"{100 * float(level):.0f}% " if level else ""
    return f"[{interval['low']:.{digits}f}, {interval['high']:.{digits}f}] {level_text}{interval.get('method', '')}".rstrip()


def value_cell(value: Optional[float], interval: Optional[Dict[str, Any]] = None, scaled: Optional[float] = None,
               note_mark: str = "", digits: int = 4, n_seeds: int = 0) -> "Markup":
    """A value as mean, its interval (seeds) beneath, its scaled score and a note marker beside it."""
    if value is None:
        text = "<span class='note'>n/a</span>"
    else:
        text = f"{value:.{digits}f}"
    ci = _interval_text(interval, digits)
    if ci:
        text += f"<br><span class='ci'>{_esc(ci)}{f' n={n_seeds}' if n_seeds else ''}</span>"
    if scaled is not None:
        cls = "scaled neg" if scaled < 0 else "scaled"
        text += f"<span class='{cls}' title='scaled score'>s={scaled:.2f}</span>"
    if note_mark:
        text += f" <sup class='note'>{_esc(note_mark)}</sup>"
    return Markup(text, "num")


def _num(text: str) -> "Markup":
    """A pre-formatted number: right-aligned, never wrapped."""
    return Markup(_esc(text), "num")


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {sec:02d}s"


def _gib(value: Optional[float]) -> str:
    return "" if value is None else f"{value / 1024 ** 3:.2f}"


def ranking_figure(ranking: Dict[str, Any]) -> str:
    """A funky-heatmap-style figure: rows = models in rank order, a bar for the overall score, then per
    task its mean (large circle) and its metrics (small circles), circle area by scaled score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    models = ranking["models"]
    tasks = ranking["tasks"]
    metric_columns = {t: [c for c in ranking["columns"] if c.split("/", 1)[0] == t] for t in tasks}
    # x layout: overall bar (width 3), then per task one mean column and its metric columns, a gap between tasks.
    columns: List[Tuple[float, str, str, str]] = []  # (x, header, kind, key)
    x = 4.0
    for task in tasks:
        columns.append((x, task, "task", task))
        x += 1.0
        for key in metric_columns[task]:
            columns.append((x, key.split("/", 1)[1], "metric", key))
            x += 0.8
        x += 0.6
    width = x
    n = len(models)
    # Room for the longest "rank. label" at 8 pt (about 0.18 units per character at this scale).
    left = 0.6 + 0.18 * max(len(f"{m['rank']}. {m['label']}") for m in models)
    fig, ax = plt.subplots(figsize=(0.42 * (width + left), 0.42 * n + 2.4))
    cmap = plt.get_cmap("viridis")
    for i, model in enumerate(models):
        y = n - 1 - i
        if i % 2 == 0:
            ax.add_patch(Rectangle((-left, y - 0.5), width + left, 1.0, color="#f4f4f4", zorder=0, lw=0))
        label = f"{model['rank']}. {model['label']}"
        ax.text(-left + 0.1, y, label, va="center", ha="left", fontsize=8,
                fontweight="bold" if model["model"] != "baseline" else "normal")
        overall = model["overall"]
        if overall is not None:
            ax.add_patch(Rectangle((0.2, y - 0.3), 3.0 * overall, 0.6, color=cmap(overall), zorder=2))
            ax.text(0.25 + 3.0 * overall, y, f"{overall:.2f}", va="center", fontsize=7, zorder=3)
            interval = model.get("overall_interval")
            if interval:
                ax.plot([0.2 + 3.0 * max(0.0, interval["low"]), 0.2 + 3.0 * min(1.0, interval["high"])], [y, y],
                        color="#222", lw=1.2, zorder=4)
            if model.get("separable_from_next") is False:
                ax.text(3.5, y - 0.5, "≈", ha="center", va="center", fontsize=10, color="#b60", zorder=5)
        for cx, _, kind, key in columns:
            score = model["tasks"].get(key, {}).get("mean") if kind == "task" else model["metrics"].get(key)
            if score is None:
                ax.plot(cx, y, marker="x", color="#ccc", ms=3, zorder=2)
                continue
            radius = (0.12 + 0.36 * score) if kind == "task" else (0.08 + 0.28 * score)
            ax.add_patch(Circle((cx, y), radius, color=cmap(score), zorder=2,
                                ec="#333" if kind == "task" else "none", lw=0.6))
    ax.text(0.2, n - 0.2, "overall", fontsize=8, rotation=40, ha="left", va="bottom", fontweight="bold")
    for cx, header, kind, _ in columns:
        ax.text(cx - 0.2, n - 0.2, header, fontsize=8 if kind == "task" else 6.5, rotation=40, ha="left", va="bottom",
                fontweight="bold" if kind == "task" else "normal")
    ax.set_xlim(-left, width)
    ax.set_ylim(-1.0, n + 3.8)
    ax.set_aspect("equal")
    ax.axis("off")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    cbar = fig.colorbar(sm, ax=ax, orientation="horizontal", fraction=0.03, pad=0.02, aspect=40, shrink=0.5)
    cbar.set_label("scaled score (0 = best baseline, 1 = ideal); ≈ = not separable from the next row", fontsize=7)
    cbar.ax.tick_params(labelsize=7)
    return _png(fig)


def quality_cost_plot(ranking: Dict[str, Any], per_model: Dict[str, Dict[str, Any]]) -> str:
    """Overall scaled score against total wall time of the model's outputs (log scale), one point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for model in ranking["models"]:
        cost = per_model.get(model["label"])
        if model["overall"] is None or not cost or not cost["wall_seconds"]:
            continue
        baseline = model["model"] == "baseline"
        interval = model.get("overall_interval")
        yerr = None if not interval else [[max(0.0, model["overall"] - interval["low"])],
                                          [max(0.0, interval["high"] - model["overall"])]]
        ax.errorbar(cost["wall_seconds"], model["overall"], yerr=yerr, fmt="s" if baseline else "o",
                    color="#888" if baseline else "#1f77b4", capsize=3, ms=6)
        ax.annotate(model["label"], (cost["wall_seconds"], model["overall"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("wall time of the model's outputs, all datasets (s, log)", fontsize=8)
    ax.set_ylabel("overall scaled score", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def _note_marks(notes: List[str], note: str) -> str:
    """The marker of ``note`` in the list under a table (added when new)."""
    if not note:
        return ""
    if note not in notes:
        notes.append(note)
    return f"[{notes.index(note) + 1}]"


def _notes_list(notes: List[str]) -> str:
    if not notes:
        return ""
    return "<ol class='notes'>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ol>"


def task_detail(rows: List[Dict[str, Any]], ranking: Dict[str, Any]) -> List[str]:
    """Per task: dataset x metric rows, one column per model: mean, seed interval, scaled score, note marker."""
    scaled = {(s["dataset"], s["task"], s["label"], s["metric_label"]): s for s in ranking.get("scaled", [])}
    parts: List[str] = []
    tasks = list(OrderedDict.fromkeys(r["task"] for r in rows if headline(r)))
    for task in tasks:
        task_rows = [r for r in rows if r["task"] == task and headline(r)]
        models = sorted({model_label(r) for r in task_rows}, key=lambda m: (m.startswith("BASELINE"), m))
        table: "OrderedDict[Tuple[str, str], Dict[str, Dict[str, Any]]]" = OrderedDict()
        for row in task_rows:
            table.setdefault((row["dataset"], metric_label(row)), {})[model_label(row)] = row
        notes: List[str] = []
        body = []
        for (dataset, label), by_model in table.items():
            cells: List[Any] = [dataset, label]
            for model in models:
                row = by_model.get(model)
                if row is None:
                    cells.append("")
                    continue
                score = scaled.get((dataset, task, model, label)) or {}
                cells.append(value_cell(row["value"], row.get("interval"), score.get("scaled"),
                                        _note_marks(notes, row.get("note", "")), n_seeds=len(row.get("values") or [])))
            body.append(cells)
        parts.append(f"<h3 id='task-{_esc(task)}'>{_esc(task)}</h3>")
        parts.append(_table(["dataset", "metric"] + models, body))
        parts.append(_notes_list(notes))
    return parts


def ranking_section(results: Dict[str, Any], plots: bool) -> List[str]:
    """The figure and the ranking table: overall and per-task means with intervals, separability, cost."""
    ranking = results.get("ranking") or {}
    models = ranking.get("models") or []
    if not models:
        return []
    per_model = (results.get("cost") or {}).get("per_model") or {}
    parts = ["<h2 id='ranking'>Ranking</h2>",
             "<p>Scaled scores per dataset x task x metric: <b>0 = the best baseline</b> of that dataset and task "
             "(tasks without baselines: the worst value of the metric's range), <b>1 = the metric's ideal value</b> "
             "(see the glossary; unbounded: the best value observed). Task means and the overall score (mean of "
             "the task means) average scores clipped to [0, 1]. Intervals: 95% over seeds where EVALUATE ran several; "
             "<span class='nsep'>not separable</span> = this model's overall interval overlaps the next one's. "
             "A model scored on fewer tasks is ranked on those it was scored on (column <i>tasks</i>).</p>"]
    if plots:
        parts.append(f"<figure id='ranking-figure'>{ranking_figure(ranking)}</figure>")
    tasks = ranking.get("tasks", [])
    body = []
    for model in models:
        overall = model["overall"]
        separable = model.get("separable_from_next")
        vs_next = ("" if model is models[-1] else "separable" if separable else
                   Markup("<span class='nsep'>not separable</span>") if separable is False else "no interval (one seed)")
        cost = per_model.get(model["label"]) or {}
        cells: List[Any] = [model["rank"], model["label"], value_cell(overall, model.get("overall_interval"), digits=3),
                            vs_next]
        for task in tasks:
            entry = model["tasks"].get(task)
            cells.append(value_cell(entry["mean"], entry.get("interval"), digits=3) if entry else "")
        cells += [_num(f"{model['n_tasks']}/{len(tasks)}"), _num(_duration(cost.get("wall_seconds"))),
                  _num(f"{cost['cpu_hours']:.3f}" if cost.get("cpu_hours") is not None else ""),
                  _num(_gib(cost.get("peak_rss_bytes")))]
        body.append(cells)
    classes = ["baseline" if m["model"] == "baseline" else "" for m in models]
    parts.append(_table(["rank", "model", "overall", "vs next"] + tasks + ["tasks", "wall time", "CPU h", "peak RSS GiB"],
                        body, classes, table_id="ranking-table"))
    return parts


def cost_section(results: Dict[str, Any], plots: bool) -> List[str]:
    """Per model x dataset output: wall time, CPU hours, memory, cells per second; and quality against cost."""
    cost = results.get("cost") or {}
    outputs = cost.get("outputs") or []
    parts = ["<h2 id='cost'>Cost beside quality</h2>"]
    if not outputs:
        parts.append("<p>No cost figures: Nextflow's trace (pipeline_info/trace.txt) was not readable by REPORT.</p>")
        return parts
    parts.append("<p>From Nextflow's trace (last attempt of the process that made each output): wall time "
                 "(<code>realtime</code>), CPU hours (<code>%cpu</code> x realtime), peak resident memory "
                 "(<code>peak_rss</code>), GPU peak memory where the model recorded <code>gpu_peak_memory</code>, "
                 "cells per second (the output's cells / wall time, start-up included), and the EVALUATE time "
                 "spent scoring the output.</p>")
    body = [[c["label"], c["dataset"], c["variant"], c["process"], _num(_duration(c["wall_seconds"])),
             _num(f"{c['cpu_hours']:.4f}" if c["cpu_hours"] is not None else ""), _num(_gib(c["peak_rss_bytes"])),
             _num(_gib(c["gpu_peak_memory_bytes"])), _num(f"{c['cells_per_second']:.1f}" if c["cells_per_second"] else ""),
             _num(_duration(c["evaluate_wall_seconds"])), c["container"]]
            for c in sorted(outputs, key=lambda c: (c["label"].startswith("BASELINE"), c["label"], c["dataset"]))]
    parts.append(_table(["model", "dataset", "variant", "process", "wall time", "CPU h", "peak RSS GiB",
                         "GPU peak GiB", "cells/s", "evaluate time", "container"], body, table_id="cost-table"))
    if plots and (results.get("ranking") or {}).get("models"):
        parts.append(f"<figure id='quality-cost'>{quality_cost_plot(results['ranking'], cost.get('per_model') or {})}"
                     "<figcaption>Overall scaled score against the total wall time of the model's outputs.</figcaption></figure>")
    return parts


def model_cards_section(results: Dict[str, Any]) -> List[str]:
    cards = results.get("model_cards") or []
    if not cards:
        return []
    engine = (results.get("run") or {}).get("container_engine")
    parts = ["<h2 id='models'>Models</h2>"]
    if engine == "":
        parts.append("<p>This run used no container engine: <i>container</i> is the image the registry pins "
                     "(Nextflow's trace records it), not one the processes ran in.</p>")
    parts.append("<div class='cards'>")
    for card in cards:
        weights = "; ".join(f"{d}: {w}" for d, w in card["weights"].items())
        fields = [("type", card.get("model_type", "")), ("variants", ", ".join(card["variants"])),
                  ("weights sha256", weights or "none (no weights)"), ("precision", ", ".join(card["precision"]) or "not recorded"),
                  ("container", ", ".join(card["containers"]) or "not recorded"), ("citation", card.get("citation") or "")]
        items = "".join(f"<dt>{_esc(k)}</dt><dd>{_long(v) if len(v) > LONG_CELL and k == 'weights sha256' else _esc(v)}</dd>"
                        for k, v in fields if v)
        parts.append(f"<div class='card'><h3>{_esc(card['label'])}</h3><dl>{items}</dl></div>")
    parts.append("</div>")
    return parts


def glossary_section(results: Dict[str, Any]) -> List[str]:
    catalogue = results.get("metrics_catalogue") or {}
    if not catalogue:
        return []
    body = []
    for name, spec in catalogue.items():
        lo, hi = spec["range"]
        ideal = hi if spec["direction"] == "higher" else lo
        body.append([name + (f" (czbenchmarks: {spec['czbenchmarks']})" if spec.get("czbenchmarks") else ""),
                     ", ".join(spec.get("tasks") or []), f"{spec['direction']} is better",
                     f"[{'-∞' if lo is None else lo}, {'∞' if hi is None else hi}]",
                     "best observed" if ideal is None else str(ideal),
                     spec.get("description", "") + (f" Note: {spec['at_worst']}" if spec.get("at_worst") else "")])
    return ["<h2 id='glossary'>Glossary of metrics</h2><p>From conf/metrics.yaml. <i>scaled 1</i>: the value the "
            "scaled score calls 1 (positive control).</p>",
            _table(["metric", "tasks", "direction", "range", "scaled 1", "what it measures"], body, table_id="glossary-table")]


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
        f" (results schema {_esc(results.get('schema_version'))}); {len(rows)} metric values. "
        "<a href='#ranking'>Ranking</a> · <a href='#cost'>Cost</a> · <a href='#summary'>Per task</a> · "
        "<a href='#models'>Models</a> · <a href='#glossary'>Glossary</a></p>",
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

    parts += ranking_section(results, plots)
    parts += cost_section(results, plots)

    parts.append("<h2 id='summary'>Per task</h2><p>Headline values (label prediction: mean over classifiers and "
                 "folds; perturbation: mean over test conditions) as mean, with the seed interval beneath where "
                 "EVALUATE ran several seeds, and the scaled score <span class='scaled'>s=</span>. "
                 "Every value is in benchmark_results.csv.</p>")
    parts += task_detail(rows, results.get("ranking") or {})

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

    parts += model_cards_section(results)
    parts += glossary_section(results)

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
                            [[k, v["variant"], v["seed"], v["weights_sha256"], v["software"]] for k, v in provenance.items()],
                            table_id="provenance-table"))
    parts.append("<h3>Report software</h3>")
    parts.append(_long(json.dumps(results.get("report_software", {}), sort_keys=True)))
    parts.append("</body></html>")
    return "\n".join(parts)
