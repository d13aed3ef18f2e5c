process REPORT {
    label 'process_single'

    input:
    path(metrics, stageAs: 'metrics/*')
    path(verdicts, stageAs: 'verdicts/*')
    val(plan)   // JSON lines: run, datasets, models (what the run was asked for)
    path(embeddings, stageAs: 'embeddings/*')

    output:
    path("benchmark_results.json"), emit: json
    path("benchmark_results.csv"), emit: csv
    path("report.html"), emit: html

    script:
    def args = task.ext.args ?: ''
    """
    cat > plan.jsonl <<'CZB_PLAN'
${plan}
CZB_PLAN
    czb_report.py \\
        --metrics ${metrics} \\
        --verdicts ${verdicts} \\
        --plan plan.jsonl \\
        --embeddings ${embeddings} \\
        --umap_max_cells ${params.umap_max_cells} \\
        --seed ${params.seed} \\
        --outdir . \\
        ${args}
    """

    stub:
    """
    cat > plan.jsonl <<'CZB_PLAN'
${plan}
CZB_PLAN
    czb_report.py --metrics ${metrics} --verdicts ${verdicts} --plan plan.jsonl --no_plots --outdir .
    """
}
