process REPORT {
    label 'process_single'

    input:
    path(metrics, stageAs: 'metrics/*')
    path(verdicts, stageAs: 'verdicts/*')
    val(plan)        // JSON lines: the run, datasets, models, pairs and every cell the workflow scheduled
    path(embeddings, stageAs: 'embeddings/*')
    val(trace)       // Nextflow's trace file (read when reachable: why failed tasks failed, what each output cost)
    path(catalogues, stageAs: 'catalogues/*')  // conf/metrics.yaml (directions, ranges) and conf/models.yaml (citations)

    output:
    path("benchmark_results.json"), emit: json
    path("benchmark_results.csv"), emit: csv
    path("report.html"), emit: html
    path("summary.json"), emit: summary

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
        --trace '${trace}' \\
        --metric_catalogue catalogues/metrics.yaml \\
        --model_registry catalogues/models.yaml \\
        --outdir . \\
        ${args}
    """

    stub:
    """
    cat > plan.jsonl <<'CZB_PLAN'
${plan}
CZB_PLAN
    czb_report.py --metrics ${metrics} --verdicts ${verdicts} --plan plan.jsonl --trace '${trace}' \\
        --metric_catalogue catalogues/metrics.yaml --model_registry catalogues/models.yaml --no_plots --outdir .
    """
}
