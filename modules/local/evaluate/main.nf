process EVALUATE {
    tag "${cell.dataset}:${cell.model}:${cell.variant ?: 'default'}:${cell.task}"
    label 'process_low'

    input:
    // cell: the plan cell (dataset ids, model, variant, task) with what the task reads from each
    // dataset (organisms, label/batch/condition/split columns) and the output kind scored.
    // outputs: one model output (one per dataset for a multi-dataset task; the dataset itself for
    // raw expression); datasets: the dataset h5ad(s) (alignment check, perturbation truth).
    tuple val(cell), path(outputs, stageAs: 'outputs/*'), path(datasets, stageAs: 'datasets/*')

    output:
    tuple val(cell), path("${prefix}.metrics.json"), emit: metrics

    script:
    prefix = "${cell.dataset}.${cell.model}.${cell.variant ?: 'default'}.${cell.task}"
    def args = task.ext.args ?: ''
    def quoted = { List values -> values.collect { v -> "'${v}'" }.join(' ') }
    """
    export OMP_NUM_THREADS=${task.cpus}
    czb_evaluate.py \\
        --task '${cell.task}' \\
        --outputs ${outputs} \\
        --datasets ${datasets} \\
        --dataset_ids ${quoted.call(cell.datasets)} \\
        --organisms ${quoted.call(cell.organisms)} \\
        --model '${cell.model}' \\
        --variant '${cell.variant ?: ''}' \\
        --input_kind '${cell.input_kind}' \\
        --label_key '${cell.label_key ?: ''}' \\
        --batch_key '${cell.batch_key ?: ''}' \\
        --condition_key '${cell.condition_key ?: 'condition'}' \\
        --split_key '${cell.split_key ?: 'split'}' \\
        --counts_layer '${cell.counts_layer ?: ''}' \\
        --output '${prefix}.metrics.json' \\
        ${args}
    """

    stub:
    prefix = "${cell.dataset}.${cell.model}.${cell.variant ?: 'default'}.${cell.task}"
    """
    cat > '${prefix}.metrics.json' <<'JSON'
    {"dataset": "${cell.dataset}", "datasets": ${groovy.json.JsonOutput.toJson(cell.datasets)}, "model": "${cell.model}",
     "model_type": "${cell.model_type ?: ''}", "variant": "${cell.variant ?: ''}", "task": "${cell.task}",
     "status": "ok", "params": {}, "provenance": {},
     "metrics": [{"metric_type": "stub", "value": 0.0, "params": {}}]}
    JSON
    """
}
