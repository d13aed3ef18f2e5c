process EVALUATE {
    tag "${meta.id}:${meta.model}${meta.variant ? ':' + meta.variant : ''}:${meta.task}"
    label 'process_low'

    input:
    // outputs: one model output (several for cross_species; the dataset itself for raw expression);
    // datasets: the dataset h5ad (alignment check, perturbation truth) or [] when not needed.
    tuple val(meta), path(outputs, stageAs: 'outputs/*'), path(datasets, stageAs: 'datasets/*')

    output:
    tuple val(meta), path("${prefix}.metrics.json"), emit: metrics

    script:
    prefix = "${meta.id}.${meta.model}.${meta.variant ?: 'default'}.${meta.task}"
    def args = task.ext.args ?: ''
    def organisms = meta.organisms.collect { "'${it}'" }.join(' ')
    def ids = meta.ids.collect { "'${it}'" }.join(' ')
    def dataset_arg = datasets ? "--datasets ${datasets}" : ''
    """
    export OMP_NUM_THREADS=${task.cpus}
    czb_evaluate.py \\
        --task '${meta.task}' \\
        --outputs ${outputs} \\
        --dataset_ids ${ids} \\
        --organisms ${organisms} \\
        ${dataset_arg} \\
        --model '${meta.model}' \\
        --variant '${meta.variant ?: ''}' \\
        --input_kind '${meta.input_kind}' \\
        --label_key '${meta.label_key ?: ''}' \\
        --batch_key '${meta.batch_key ?: ''}' \\
        --condition_key '${meta.condition_key ?: 'condition'}' \\
        --split_key '${meta.split_key ?: 'split'}' \\
        --seed ${params.seed} \\
        --output '${prefix}.metrics.json' \\
        ${args}
    """

    stub:
    prefix = "${meta.id}.${meta.model}.${meta.variant ?: 'default'}.${meta.task}"
    """
    cat > '${prefix}.metrics.json' <<'JSON'
    {"dataset": "${meta.id}", "datasets": ${groovy.json.JsonOutput.toJson(meta.ids)}, "model": "${meta.model}",
     "model_type": "${meta.model_type ?: ''}", "variant": "${meta.variant ?: ''}", "task": "${meta.task}",
     "seed": ${params.seed}, "status": "ok", "params": {}, "provenance": {},
     "metrics": [{"metric_type": "stub", "value": 0.0, "params": {}}]}
    JSON
    """
}
